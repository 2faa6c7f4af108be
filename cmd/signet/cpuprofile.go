package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// cpuProfileEnv names a file to which the process writes a CPU profile
// (runtime/pprof) from start to a clean exit. Opt-in, for profiling the real
// agent or server under load; unset, nothing is profiled.
const cpuProfileEnv = "SIGNET_CPU_PROFILE"

// heapProfileEnv names a file to which the process writes a heap profile
// (runtime/pprof "heap": live objects at exit and every allocation since
// start, by call stack) at a clean exit. Opt-in, like cpuProfileEnv.
const heapProfileEnv = "SIGNET_HEAP_PROFILE"

// withCPUProfile runs f, profiling it when SIGNET_CPU_PROFILE is set, and
// writes a heap profile after it when SIGNET_HEAP_PROFILE is set.
func withCPUProfile(f func() int) int {
	if path := os.Getenv(heapProfileEnv); path != "" {
		inner := f
		f = func() int {
			code := inner()
			if err := writeHeapProfile(path); err != nil {
				fmt.Fprintf(os.Stderr, "signet: %s: %v\n", heapProfileEnv, err)
			}
			return code
		}
	}
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

// writeHeapProfile writes the heap profile to path (0600) after a GC, so
// the live figures are current.
func writeHeapProfile(path string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
