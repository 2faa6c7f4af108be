package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names a file to which the process writes a CPU profile
// (runtime/pprof) from start to a clean exit. Opt-in, for profiling the real
// agent or server under load; unset, nothing is profiled.
const cpuProfileEnv = "SIGNET_CPU_PROFILE"

// withCPUProfile runs f, profiling it when SIGNET_CPU_PROFILE is set.
func withCPUProfile(f func() int) int {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return f()
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "signet: %s: %v\n", cpuProfileEnv, err)
		return 1
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		fmt.Fprintf(os.Stderr, "signet: %s: %v\n", cpuProfileEnv, err)
		out.Close()
		return 1
	}
	code := f()
	pprof.StopCPUProfile()
	if err := out.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "signet: %s: %v\n", cpuProfileEnv, err)
	}
	return code
}
