// Command signet is the single binary of the Signet workload identity
// platform: server, agent, admin CLI and tools. This package only wires
// components together; all logic lives under internal/.
package main

import (
	"errors"
	"fmt"
	"os"
)

// exitError carries a specific process exit code out of a command. Commands
// whose exit code is part of their contract (scan: 0 clean, 1 findings,
// 2 error) return one; any other error exits 1.
type exitError struct {
	code int
	err  error // printed to stderr when non-nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func main() {
	os.Exit(withCPUProfile(func() int { return run(os.Args[1:]) }))
}

// run executes the CLI with args and returns the process exit code.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "signet: "+ee.err.Error())
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "signet: "+err.Error())
	return 1
}
