package audit

import (
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// TestWorkloadAPIFollowsTable: audit reads the template of every kind the validator checks
// (engine.Workloads' validated rows) and of no kind the table does not know.
func TestWorkloadAPIFollowsTable(t *testing.T) {
	want := map[string]bool{}
	for _, w := range engine.ValidatedWorkloads() {
		want[w.Kind] = true
		if _, ok := workloadAPIs[w.Kind]; !ok {
			t.Errorf("engine.Workloads validates %s; audit has no call to read it (workloadAPIs)", w.Kind)
		}
	}
	for kind := range workloadAPIs {
		if !want[kind] {
			t.Errorf("audit reads %s, which is no validated row of engine.Workloads", kind)
		}
	}
}
