package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Micro is one Go benchmark result (median of the runs).
type Micro struct {
	Name string  `json:"name"` // e.g. Handler/realistic
	NsOp float64 `json:"ns_op"`
	// CPUNsOp is process CPU time per op (GC included), robust to other load on the machine;
	// targets compare on it.
	CPUNsOp  float64 `json:"cpu_ns_op"`
	BOp      int64   `json:"b_op"`
	AllocsOp int64   `json:"allocs_op"`
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?(?:\s+([\d.]+) cpu-ns/op)?\s+(\d+) B/op\s+(\d+) allocs/op`)

// RunMicro runs the engine and handler benchmarks count times each and returns the medians
// (by CPU time per op).
func RunMicro(root string, count int) ([]Micro, error) {
	// -cpu 1: one P, as the server has on its one core in section 2.
	cmd := exec.Command("go", "test", "-cpu", "1", "-run", "^$", "-bench", "^Benchmark(DecodePod|Handler|Generic|Decide|Mutate)$",
		"-benchmem", "-benchtime=500ms", "-count="+strconv.Itoa(count), "./pkg/webhook", "./pkg/engine")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench: %w\n%s", err, out.String())
	}
	return ParseBench(out.String())
}

// ParseBench parses `go test -bench -benchmem` output, taking the median ns/op per name.
func ParseBench(s string) ([]Micro, error) {
	byName := map[string][]Micro{}
	var order []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		cpu, _ := strconv.ParseFloat(m[3], 64)
		b, _ := strconv.ParseInt(m[4], 10, 64)
		a, _ := strconv.ParseInt(m[5], 10, 64)
		if _, ok := byName[m[1]]; !ok {
			order = append(order, m[1])
		}
		byName[m[1]] = append(byName[m[1]], Micro{m[1], ns, cpu, b, a})
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("no benchmark results in:\n%s", s)
	}
	out := make([]Micro, 0, len(order))
	for _, n := range order {
		rs := byName[n]
		sort.Slice(rs, func(i, j int) bool { return rs[i].CPUNsOp < rs[j].CPUNsOp })
		out = append(out, rs[len(rs)/2])
	}
	return out, nil
}

// MicroByName finds a result.
func MicroByName(ms []Micro, name string) (Micro, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return Micro{}, false
}
