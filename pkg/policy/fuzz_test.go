package policy

import (
	"math/big"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// policySeeds: the documented example, every field alone, and the shapes that break loaders
// (wrong types, huge numbers, anchors, deep nesting, duplicate keys, tabs).
var policySeeds = []string{
	"",
	"onInvalid: reject\n",
	"existingPreStop: replace\n",
	"defaults:\n  preStopSleep: 45s\n  shutdownBudget: 0s\n  preStopAction: exec\n",
	"limits:\n  minPreStopSleep: 1s\n  maxPreStopSleep: 10m\n  maxTerminationGracePeriod: 15m\n",
	"selector:\n  matchLabels:\n    app: pgw\n",
	"selector:\n  matchExpressions:\n  - key: app.kubernetes.io/name\n    operator: In\n    values: [prometheus-pushgateway, pushgateway]\n",
	"selector:\n  matchExpressions:\n  - key: a\n    operator: Bogus\n",
	"defaults:\n  preStopSleep: 9999999999999999999s\n",
	"defaults:\n  shutdownBudget: 9223372036854775807\n",
	"limits:\n  maxTerminationGracePeriod: 9223372036854775807\n  maxPreStopSleep: 9223372036854775807\n",
	"defaults:\n  preStopSleep: -5s\n",
	"defaults:\n  preStopSleep: 1.5s\n",
	"defaults: [1, 2]\n",
	"onInvalid: 7\n",
	"a: &a [*a]\n",
	"unknownField: 1\n",
	"onInvalid: warn\nonInvalid: reject\n",
	"{\"onInvalid\": \"reject\", \"defaults\": {\"preStopSleep\": 60}}",
	"\tonInvalid: reject\n",
}

// FuzzParse: the loader never panics, and a policy it accepts is internally consistent
// (Validate's invariants hold in exact arithmetic, not only in int64) and survives a
// write/read round trip, which is what a user doing `kubectl get -o yaml` then editing does.
func FuzzParse(f *testing.F) {
	for _, s := range policySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse returned a policy with an error: %v", err)
			}
			return
		}
		if errs := p.Validate(); len(errs) > 0 {
			t.Fatalf("Parse accepted a policy that Validate refuses: %v", errs.ToAggregate())
		}
		sum := new(big.Int).Add(big.NewInt(int64(p.Defaults.PreStopSleep)), big.NewInt(int64(p.Defaults.ShutdownBudget)))
		if sum.Cmp(big.NewInt(int64(p.Limits.MaxTerminationGracePeriod))) > 0 {
			t.Fatalf("accepted preStopSleep %d + shutdownBudget %d > maxTerminationGracePeriod %d (int64 overflow in Validate)",
				p.Defaults.PreStopSleep, p.Defaults.ShutdownBudget, p.Limits.MaxTerminationGracePeriod)
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("marshalling an accepted policy: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("an accepted policy does not read back after writing it:\n%s\nerror: %v", out, err)
		}
		p.selector, back.selector = nil, nil
		if !reflect.DeepEqual(p, back) {
			t.Fatalf("round trip changed the policy:\nbefore %+v\nafter  %+v\nyaml:\n%s", p, back, out)
		}
	})
}
