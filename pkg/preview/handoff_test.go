package preview

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/policy"
)

const handoffDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: pgw
spec:
  template:
    metadata:
      labels:
        app.kubernetes.io/name: prometheus-pushgateway
    spec:
      containers:
        - name: pushgateway
          image: quay.io/prometheus/pushgateway:v1.11.3
      volumes:
        - name: storage-volume
%s
`

// The gate depends on other pods at admission: mutate names it as a note and never patches it.
func TestHandoffNotes(t *testing.T) {
	for _, c := range []struct {
		name, volume string
		notes        int
	}{
		{"claim", "          persistentVolumeClaim:\n            claimName: pgw-data", 1},
		{"emptyDir", "          emptyDir: {}", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol, err := policy.Load("")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			in := strings.NewReader(strings.Replace(handoffDeployment, "%s", c.volume, 1))
			res, err := Stream(in, &out, pol, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), annotations.SchedulingGateHandoff) {
				t.Errorf("mutate wrote the gate into its output:\n%s", out.String())
			}
			notes := HandoffNotes(res)
			if len(notes) != c.notes {
				t.Fatalf("%d notes, want %d: %v", len(notes), c.notes, notes)
			}
			if c.notes > 0 && !strings.Contains(notes[0].String(), "Deployment/pgw") || c.notes > 0 && !strings.Contains(notes[0].String(), "claim pgw-data") {
				t.Errorf("note does not name the object and its claim: %s", notes[0])
			}
		})
	}
}
