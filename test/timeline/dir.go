package timeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Figure is one stacked picture of a directory of logs: every log whose name matches Glob, in
// name order, on one time scale.
type Figure struct {
	Name, Title, Glob string
}

// ProofFigures are the stacked pictures `make proof` draws in docs/proof: the three arms, and
// the sweep. The logs are named so that name order is the order of the tables.
var ProofFigures = []Figure{
	{Name: "timeline.svg", Title: "A Pushgateway pod replaced under load, three pod specs", Glob: "arm*.jsonl"},
	{Name: "sweep.svg", Title: "Sweep: preStop sleep against the delay, shutdown budget against the persist", Glob: "sweep*.jsonl"},
}

// RenderDir reads every log (*.jsonl) in dir and draws every picture of it: one per log (same
// name, .svg) and the stacked figures. It returns file name -> SVG, and reads nothing else, so
// the pictures in a directory are checked by rendering its logs again.
func RenderDir(dir string) (map[string][]byte, error) {
	logs, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	if len(logs) == 0 {
		return nil, fmt.Errorf("no event log (*.jsonl) in %s", dir)
	}
	sort.Strings(logs)
	out := map[string][]byte{}
	runs := map[string]*Run{}
	for _, path := range logs {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		run, err := Read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		base := filepath.Base(path)
		runs[base] = run
		svg, err := SVG("Pushgateway pod replaced under load: "+run.Arm, run)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out[strings.TrimSuffix(base, ".jsonl")+".svg"] = svg
	}
	for _, fig := range ProofFigures {
		var stack []*Run
		for _, path := range logs {
			if ok, _ := filepath.Match(fig.Glob, filepath.Base(path)); ok {
				stack = append(stack, runs[filepath.Base(path)])
			}
		}
		if len(stack) == 0 {
			continue
		}
		svg, err := SVG(fig.Title, stack...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fig.Name, err)
		}
		out[fig.Name] = svg
	}
	return out, nil
}

// WriteDir renders dir (RenderDir) and writes the pictures into it.
func WriteDir(dir string) ([]string, error) {
	pics, err := RenderDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pics))
	for name, svg := range pics {
		if err := os.WriteFile(filepath.Join(dir, name), svg, 0o644); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}
