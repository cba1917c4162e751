package engine_test

import (
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/cputime"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/podgen"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// Decide is the pure decision (what the webhook runs); Mutate is Decide plus Apply on a deep
// copy (what `mutate` and a generic defaulter run). Both on already decoded pods: the
// decode and patch costs are in pkg/webhook's benchmarks.

func BenchmarkDecide(b *testing.B) {
	cs, err := podgen.Cases()
	if err != nil {
		b.Fatal(err)
	}
	pol := policy.Default()
	for _, c := range cs {
		b.Run(c.Name, func(b *testing.B) {
			if d := engine.Decide(c.Pod, podgen.Namespace, pol); len(d.Containers) == 0 {
				b.Fatalf("no hook decided: %+v", d)
			}
			b.ReportAllocs()
			cpu0 := cputime.Now()
			for b.Loop() {
				_ = engine.Decide(c.Pod, podgen.Namespace, pol)
			}
			cputime.Report(b, cpu0)
		})
	}
}

func BenchmarkMutate(b *testing.B) {
	cs, err := podgen.Cases()
	if err != nil {
		b.Fatal(err)
	}
	pol := policy.Default()
	for _, c := range cs {
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cputime.Now()
			for b.Loop() {
				_, _ = engine.Mutate(c.Pod, podgen.Namespace, pol)
			}
			cputime.Report(b, cpu0)
		})
	}
}
