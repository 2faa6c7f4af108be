//go:build !unix

package inventoryapi

import "time"

func cpuTime() time.Duration { return 0 }
