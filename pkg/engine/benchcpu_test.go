package engine_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuNow is the process's CPU time. On a shared machine wall time per op inflates with
// everything else running; CPU time per op (with -cpu 1, GC included) does much less, so the
// benchmarks report both and test/bench compares on cpu-ns/op.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuNow()-start)/float64(b.N), "cpu-ns/op")
}
