package server

import "syscall"

// umask sets the process umask and returns the previous one. Used only
// around creating the admin socket so it never exists with looser modes.
func umask(mask int) int { return syscall.Umask(mask) }
