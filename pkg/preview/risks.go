package preview

import (
	"encoding/json"
	"strconv"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/engine"
)

// risksOf runs the data-risk rules (engine.Risks) on an object whose pod template tplJSON the
// engine decided d for. Only pods the webhook handles have risks, so the template is decoded
// again (the rules read arguments and mounts) for those alone.
func risksOf(o object, kind string, tplJSON []byte, d *engine.Decision) []engine.Risk {
	if !engine.HasRisks(kind, d) {
		return nil
	}
	pod, err := engine.DecodeRiskTemplate(tplJSON)
	if err != nil {
		// The engine's decode accepted it; a field only the rules read (args) can still be
		// mistyped. The API server refuses such an object anyway.
		return nil
	}
	w := &engine.Workload{Kind: kind, Strategy: o.str("spec", "strategy", "type"), Pod: pod}
	if o.shape("spec", "replicas") == shapeOther {
		if b, err := o.json("spec", "replicas"); err == nil {
			if n, err := strconv.ParseInt(string(b), 10, 32); err == nil {
				r := int32(n)
				w.Replicas = &r
			}
		}
	}
	if o.shape("spec", "volumeClaimTemplates") == shapeSeq {
		if b, err := o.json("spec", "volumeClaimTemplates"); err == nil {
			var vcts []struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if json.Unmarshal(b, &vcts) == nil {
				for _, v := range vcts {
					w.ClaimTemplates = append(w.ClaimTemplates, v.Metadata.Name)
				}
			}
		}
	}
	return engine.Risks(w, d)
}

// RiskNote is one data risk of an object of the stream.
type RiskNote struct {
	Notice
	// Info marks information (what a crash loses) rather than a warning.
	Info bool
}

// RiskNotes are the data risks of the stream's objects (engine.Risks), in order: what no pod
// spec mutate writes can save.
func RiskNotes(results []Result) []RiskNote {
	var out []RiskNote
	eachResult(results, func(r *Result) {
		for _, k := range r.Risks {
			out = append(out, RiskNote{Notice: Notice{Document: r.Document, Kind: r.Kind, Name: r.Name, Reason: k.Message}, Info: k.Info})
		}
	})
	return out
}
