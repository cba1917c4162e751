// Package cputime lets Go benchmarks report process CPU time per op next to wall time. On a
// shared machine wall time per op inflates with everything else running; CPU time per op
// (with -cpu 1, GC included) does much less, so test/bench compares on cpu-ns/op.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Now is the process's CPU time (user + system).
func Now() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report adds the cpu-ns/op metric for the CPU time spent since start.
func Report(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(Now()-start)/float64(b.N), "cpu-ns/op")
}
