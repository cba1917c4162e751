package termination

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/test/timeline"
)

// pictureNote says how docs/why.md's pictures are drawn.
const pictureNote = "The picture is drawn by `test/timeline` from the event logs alone: each push is a bar from its sending to its answer " +
	"on the row of the client that sent it (4 clients, one push at a time each); the persist lane runs from the moment Pushgateway's " +
	"temporary file (`<file>.in_progress.*`, storage/diskmetricstore.go) appears to its rename over the persistence file, polled every 2 ms; " +
	"the replacement lane shows it restoring the store (light), waiting for its readiness probe (outlined), then routed to (green).\n"

// checkLog holds the event log to the counters the tables print: the picture is drawn from the
// log, so a log that disagreed with the tables would make the picture say something else.
func checkLog(t *testing.T, r *Result) {
	t.Helper()
	n := map[timeline.Fate]int{}
	kinds := map[timeline.Kind]int{}
	for _, e := range r.Log.Events {
		kinds[e.Kind]++
		if e.Kind == timeline.KindPush {
			n[e.Fate]++
		}
	}
	for _, c := range []struct {
		what      string
		log, want int
	}{
		{"pushes", kinds[timeline.KindPush], r.Attempts},
		{"acknowledged (old + new + lost)", n[timeline.FateAckOld] + n[timeline.FateAckNew] + n[timeline.FateLost], r.AckOld + r.AckNew},
		{"lost", n[timeline.FateLost], r.Lost},
		{"refused/reset while the old pod was routed", n[timeline.FateRefused], r.RefusedOld},
		{"503 without endpoint", n[timeline.FateNoEndpoint], r.NoEndpoint},
		{"other failures", n[timeline.FateOther], r.FailedNew + r.Other},
		{"SIGKILL events", kinds[timeline.KindSIGKILL], boolInt(r.Killed)},
		{"exit events", kinds[timeline.KindExit], boolInt(!r.Killed)},
		{"SIGTERM events", kinds[timeline.KindSIGTERM], 1},
		{"persist-end events", kinds[timeline.KindPersistEnd], boolInt(r.Persisted && kinds[timeline.KindPersistStart] > 0)},
	} {
		if c.log != c.want {
			t.Errorf("arm %s: the event log has %d %s, the result %d", r.Arm.Name, c.log, c.what, c.want)
		}
	}
	// A SIGKILL after the persist's rename but before the exit is a real outcome (seen in the
	// short form on an idle machine, where the persist takes about as long as the scaled 0.4 s
	// floor): the log then has both a persist end and a SIGKILL, as the table has "SIGKILL yes,
	// persist written yes". The counts above already hold the log to the table.
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeTimelines writes each arm's log as JSON lines, then draws every picture of the directory
// from the logs as read back from disk (timeline.WriteDir), so the committed pictures are what
// the committed logs render to; test/timeline's TestProofPictures checks that in make test.
func writeTimelines(t *testing.T, dir string, results []*Result) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		var b bytes.Buffer
		if err := timeline.Write(&b, r.Log); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, r.Arm.File+".jsonl"), b.Bytes())
	}
	names, err := timeline.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		svg, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, svg)
	}
	t.Logf("wrote %d event logs; timelines %v in %s", len(results), names, dir)
}

// wellFormed fails the test when the SVG is not well-formed XML (GitHub shows a broken image).
func wellFormed(t *testing.T, svg []byte) []byte {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return svg
		}
		if err != nil {
			t.Fatalf("the timeline is not well-formed XML: %v", err)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pictureReading says in words what an arm's timeline shows, from the same log it is drawn from.
func pictureReading(r *Result) string {
	at := map[timeline.Kind]float64{}
	seen := map[timeline.Kind]bool{}
	var routeNone, routeNew float64
	for _, e := range r.Log.Events {
		switch e.Kind {
		case timeline.KindRoute:
			if e.Route == timeline.RouteNone && routeNone == 0 {
				routeNone = e.T
			}
			if e.Route == timeline.RouteNew {
				routeNew = e.T
			}
		default:
			if !seen[e.Kind] {
				at[e.Kind], seen[e.Kind] = e.T, true
			}
		}
	}
	s := func(v float64) string { return fmt.Sprintf("%.1f s", v) }
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** (%s): ", r.Arm.Name, r.Arm.Term)
	if seen[timeline.KindPreStop] {
		fmt.Fprintf(&b, "the preStop sleeps to %s, past the endpoint's removal at %s, so ", s(at[timeline.KindSIGTERM]), s(routeNone))
		if r.RefusedOld == 0 {
			b.WriteString("no push meets a closed listener (no orange); ")
		} else {
			fmt.Fprintf(&b, "yet %d pushes are refused or reset (orange); ", r.RefusedOld)
		}
	} else {
		fmt.Fprintf(&b, "SIGTERM at %s while the Service routes to the old pod until %s: %d pushes refused or reset (orange); ",
			s(at[timeline.KindSIGTERM]), s(routeNone), r.RefusedOld)
	}
	switch {
	case r.Killed && seen[timeline.KindPersistEnd]:
		fmt.Fprintf(&b, "the store is written from %s to %s, then SIGKILL at %s before the process exits; %d acknowledged pushes lost; ",
			s(at[timeline.KindPersistStart]), s(at[timeline.KindPersistEnd]), s(at[timeline.KindSIGKILL]), r.Lost)
	case r.Killed && seen[timeline.KindPersistStart]:
		fmt.Fprintf(&b, "the persist starts at %s and SIGKILL cuts it at %s (hatched), so %d acknowledged pushes are lost (red, with diamonds); ",
			s(at[timeline.KindPersistStart]), s(at[timeline.KindSIGKILL]), r.Lost)
	case r.Killed:
		fmt.Fprintf(&b, "SIGKILL at %s; %d acknowledged pushes lost (red); ", s(at[timeline.KindSIGKILL]), r.Lost)
	case seen[timeline.KindPersistEnd]:
		fmt.Fprintf(&b, "the store is written from %s to %s and the process exits at %s, no SIGKILL; %d acknowledged pushes lost; ",
			s(at[timeline.KindPersistStart]), s(at[timeline.KindPersistEnd]), s(at[timeline.KindExit]), r.Lost)
	default:
		fmt.Fprintf(&b, "the process exits at %s, no SIGKILL; %d acknowledged pushes lost; ", s(at[timeline.KindExit]), r.Lost)
	}
	fmt.Fprintf(&b, "the replacement starts at %s and is routed to at %s, and the %d pushes in between get 503 (grey).",
		s(at[timeline.KindNewStart]), s(routeNew), r.NoEndpoint)
	return b.String()
}
