package preview

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/internal/testkit/fixtures"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

// The community chart's three rendered variants, as users install them: none persists (its
// persistence variant mounts a claim but never passes --persistence.file), and mutate says so.
func TestRiskNotesUpstreamChart(t *testing.T) {
	pol, err := policy.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, object, says string
	}{
		{"default.yaml", "Deployment/pgw-prometheus-pushgateway", "runs without --persistence.file"},
		{"default-sts.yaml", "StatefulSet/pgw-prometheus-pushgateway", "runs without --persistence.file"},
		{"persistence.yaml", "Deployment/pgw-prometheus-pushgateway", "runs without --persistence.file"},
	} {
		t.Run(c.file, func(t *testing.T) {
			raw, err := fixtures.ReadUpstreamChart(c.file)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Stream(bytes.NewReader(raw), &bytes.Buffer{}, pol, Options{})
			if err != nil {
				t.Fatal(err)
			}
			notes := RiskNotes(res)
			if len(notes) != 1 || notes[0].Info || !strings.Contains(notes[0].String(), c.object) || !strings.Contains(notes[0].Reason, c.says) {
				t.Fatalf("notes %v, want one warning on %s saying %q", notes, c.object, c.says)
			}
		})
	}
	// With the flag users add through extraArgs, the persistence variant has only the crash
	// bound left (it is Recreate), and a RollingUpdate one the two-writers warning too.
	raw, err := fixtures.ReadUpstreamChart("persistence.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withFlag := strings.Replace(string(raw), "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          args: [\"--persistence.file=/data/pushgateway.data\", \"--persistence.interval=1m\"]\n", 1)
	for _, c := range []struct {
		name, doc string
		codes     []string
	}{
		{"Recreate", withFlag, []string{engine.RiskCrash}},
		{"RollingUpdate", strings.Replace(withFlag, "type: Recreate", "type: RollingUpdate", 1), []string{engine.RiskTwoWriters, engine.RiskCrash}},
		{"RollingUpdate in a List", "apiVersion: v1\nkind: List\nitems:\n" + indentAsItem(strings.Replace(deploymentOf(t, withFlag), "type: Recreate", "type: RollingUpdate", 1)),
			[]string{engine.RiskTwoWriters, engine.RiskCrash}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := Stream(strings.NewReader(c.doc), &bytes.Buffer{}, pol, Options{})
			if err != nil {
				t.Fatal(err)
			}
			notes := RiskNotes(res)
			if len(notes) != len(c.codes) {
				t.Fatalf("notes %v, want %v", notes, c.codes)
			}
			for i, code := range c.codes {
				if notes[i].Info != (code == engine.RiskCrash) {
					t.Errorf("note %d: info %v for %s", i, notes[i].Info, code)
				}
			}
			if !strings.Contains(notes[len(notes)-1].Reason, "every 1m") {
				t.Errorf("the crash bound does not read the interval: %s", notes[len(notes)-1].Reason)
			}
		})
	}
}

// deploymentOf returns the Deployment document of a rendered stream.
func deploymentOf(t *testing.T, stream string) string {
	t.Helper()
	for _, d := range strings.Split(stream, "\n---\n") {
		if strings.Contains(d, "\nkind: Deployment\n") {
			return d
		}
	}
	t.Fatal("no Deployment in the stream")
	return ""
}

func indentAsItem(doc string) string {
	var b strings.Builder
	first := true
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if first {
			b.WriteString("- " + l + "\n")
			first = false
			continue
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
