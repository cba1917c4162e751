package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Output formats of -o.
const (
	FormatTable = ""
	FormatWide  = "wide"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
)

// Formats lists the accepted -o values (the table is the default, without -o).
var Formats = []string{FormatWide, FormatJSON, FormatYAML}

// Print writes the report in a format: the workload table (wide adds a table of the pods that
// need action), or the Report as JSON or YAML.
func Print(w io.Writer, r *Report, format string) error {
	switch format {
	case FormatJSON:
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case FormatYAML:
		b, err := yaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case FormatTable, FormatWide:
		return printTable(w, r, format == FormatWide)
	}
	return fmt.Errorf("unknown output format %q: must be one of %s", format, strings.Join(Formats, ", "))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printTable prints kubectl-style: upper-case headers, columns padded by three spaces, no
// borders; the NAMESPACE column only with -A.
func printTable(out io.Writer, r *Report, wide bool) error {
	tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	ns := r.Scope.AllNamespaces
	if len(r.Workloads) > 0 {
		if ns {
			fmt.Fprint(tw, "NAMESPACE\t")
		}
		fmt.Fprintln(tw, "WORKLOAD\tPROTECTED\tSTATE\tTEMPLATE\tFIX")
		for i := range r.Workloads {
			w := &r.Workloads[i]
			if ns {
				fmt.Fprintf(tw, "%s\t", w.Namespace)
			}
			ok := w.ByState[StateProtected] + w.ByState[StateOptedOut]
			fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\n", w.Ref(), ok, w.Pods, w.State, dash(w.Template), dash(w.Fix))
		}
	}
	if wide && len(r.Pods) > 0 {
		if len(r.Workloads) > 0 {
			fmt.Fprintln(tw)
		}
		if ns {
			fmt.Fprint(tw, "NAMESPACE\t")
		}
		fmt.Fprintln(tw, "POD\tSTATE\tWORKLOAD\tREASON")
		for i := range r.Pods {
			p := &r.Pods[i]
			if ns {
				fmt.Fprintf(tw, "%s\t", p.Namespace)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.State, p.Workload, dash(p.Reason))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Pods) > 0 {
		if _, err := fmt.Fprintf(out, "\n%s\n", r.Summary.Line()); err != nil {
			return err
		}
	}
	if n := r.Summary.HandoffCandidates; n > 0 {
		if _, err := fmt.Fprintf(out, "%d of these pods persist to a claim or hostPath: when one is deleted, evicted or drained, only the webhook with --handoff holds its replacement until it has stopped (docs/handoff.md); the admission-policy mode cannot see the terminating pod and does not.\n", n); err != nil {
			return err
		}
	}
	return printRisks(out, r)
}

// printRisks lists the workloads' data risks under the tables, warnings first, in the
// workloads' order: what no pod spec can save, so no FIX column entry can either.
func printRisks(out io.Writer, r *Report) error {
	var lines []string
	for _, info := range []bool{false, true} {
		for i := range r.Workloads {
			w := &r.Workloads[i]
			for _, k := range w.Risks {
				if k.Info != info {
					continue
				}
				where := w.Ref().String()
				if r.Scope.AllNamespaces {
					where += " -n " + w.Namespace
				}
				level := "warning"
				if k.Info {
					level = "info"
				}
				lines = append(lines, fmt.Sprintf("  %s: %s: %s", level, where, k.Message))
			}
		}
	}
	if len(lines) == 0 {
		return nil
	}
	_, err := fmt.Fprintf(out, "\nData risks (what no pod spec can save; docs/validation.md#data-risks):\n%s\n", strings.Join(lines, "\n"))
	return err
}

// Line is the one-line summary under the table.
func (s Summary) Line() string {
	var parts []string
	for _, st := range States {
		if n := s.ByState[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return fmt.Sprintf("%d pods in %d workloads: %s", s.Pods, s.Workloads, strings.Join(parts, ", "))
}
