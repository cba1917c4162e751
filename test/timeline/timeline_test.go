package timeline

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the pictures in testdata/ and docs/proof from the logs there")

// TestGolden renders a small recorded run (testdata/*.jsonl: two arms of the termination
// experiment's short form, as its recorder wrote them) and compares the bytes with the SVGs
// beside them: each arm alone, and the arms stacked.
func TestGolden(t *testing.T) { checkDir(t, "testdata") }

// TestProofPictures holds the pictures committed under docs/proof to the logs committed beside
// them: the picture in the README is what the recorded events render to.
func TestProofPictures(t *testing.T) { checkDir(t, filepath.Join("..", "..", "docs", "proof")) }

// TestProofNodePictures does the same for the real-node proof (make proof-node): its current
// run and the first one, a direct pod delete.
func TestProofNodePictures(t *testing.T) {
	for _, d := range []string{"proof-node", "proof-node-delete"} {
		checkDir(t, filepath.Join("..", "..", "docs", d))
	}
}

func checkDir(t *testing.T, dir string) {
	t.Helper()
	if *update {
		names, err := WriteDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %v", names)
		return
	}
	pics, err := RenderDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(pics))
	for name := range pics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%v (go test ./test/timeline -update writes it)", err)
			continue
		}
		if !bytes.Equal(pics[name], want) {
			t.Errorf("%s: not what the logs beside it render to (go test ./test/timeline -update redraws it)\n%s", filepath.Join(dir, name), firstDiff(pics[name], want))
		}
	}
	svgs, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
	for _, p := range svgs {
		if _, ok := pics[filepath.Base(p)]; !ok {
			t.Errorf("%s: no log renders to it (a stale picture)", p)
		}
	}
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got: " + gl + "\nwant: " + wl
		}
	}
	return ""
}

func TestReadRejects(t *testing.T) {
	for _, tc := range []struct{ name, log, want string }{
		{"empty", "", "empty log"},
		{"no header", `{"kind":"sigterm","t":0}`, `the first line must be kind "arm"`},
		{"unknown kind", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"reboot","t":1}`, `kind "reboot" is not an event`},
		{"unknown fate", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"push","t":1,"fate":"maybe"}`, `push fate "maybe"`},
		{"unknown route", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"route","t":1,"route":"sideways"}`, `route "sideways"`},
		{"unknown field", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"exit","t":1,"when":2}`, `unknown field "when"`},
		{"far time", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"exit","t":1e9}`, "times must be within"},
		{"negative duration", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"push","t":1,"d":-1,"fate":"lost"}`, "durations from 0"},
		{"pusher out of range", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"push","t":1,"pusher":-1,"fate":"lost"}`, "pusher -1"},
		{"second header", `{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"arm","arm":"b"}`, `after the first line`},
		{"not JSON", `{"kind":"arm","arm":"a"}` + "\n" + `exit 1`, "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.log))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Read(%q) = %v; want an error containing %q", tc.log, err, tc.want)
			}
		})
	}
}

// TestWriteRead: a run written and read back is the run, times rounded to the millisecond and
// events in time order, pushes after the other events of the same millisecond.
func TestWriteRead(t *testing.T) {
	in := &Run{Arm: "a <&> \"b\"", Spec: "preStop sleep 30s, grace 45s", Note: "n", Events: []Event{
		{Kind: KindPush, T: 0.0004, D: 1.23456, Pusher: 1, Fate: FateAckOld},
		{Kind: KindSIGTERM, T: 0.0001},
		{Kind: KindRoute, T: -3.00049, Route: RouteOld},
		{Kind: KindDeleted, T: 0},
	}}
	var b bytes.Buffer
	if err := Write(&b, in); err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"arm","t":0,"arm":"a \u003c\u0026\u003e \"b\"","spec":"preStop sleep 30s, grace 45s","note":"n"}
{"kind":"route","t":-3,"route":"old"}
{"kind":"sigterm","t":0}
{"kind":"deleted","t":0}
{"kind":"push","t":0,"d":1.235,"pusher":1,"fate":"ack-old"}
`
	if b.String() != want {
		t.Fatalf("Write:\n%s\nwant:\n%s", b.String(), want)
	}
	out, err := Read(&b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Arm != in.Arm || len(out.Events) != 4 || out.Events[3].D != 1.235 || out.Events[0].T != -3 {
		t.Errorf("Read(Write(run)) = %+v", out)
	}
}

func TestFacts(t *testing.T) {
	run := &Run{Events: []Event{
		{Kind: KindRoute, T: -3, Route: RouteOld},
		{Kind: KindRoute, T: 5, Route: RouteNone},
		{Kind: KindRoute, T: 20, Route: RouteNew},
		{Kind: KindPush, T: 1, D: 0.5, Pusher: 3, Fate: FateRefused},
		{Kind: KindPush, T: 21, D: 4, Fate: FateAckNew},
	}}
	fs := factsOf(run)
	if fs.start != -3 || fs.end != 25 || fs.pushers != 4 || fs.pushes != 2 || fs.counts[FateRefused] != 1 {
		t.Errorf("facts = %+v", fs)
	}
	if got := total(fs.routeSpans(RouteNone)); got != 15 {
		t.Errorf("time without endpoint = %v; want 15", got)
	}
	if got := fs.routeSpans(RouteNew); len(got) != 1 || got[0] != [2]float64{20, 25} {
		t.Errorf("routed to the new pod = %v; want [[20 25]] (until the last answer)", got)
	}
}

func TestTickStep(t *testing.T) {
	for _, tc := range []struct{ span, want float64 }{{3, 0.5}, {10, 1}, {20, 2}, {50, 5}, {60, 5}, {61, 10}, {5000, 600}} {
		if got := tickStep(tc.span); got != tc.want {
			t.Errorf("tickStep(%v) = %v; want %v", tc.span, got, tc.want)
		}
	}
}

// FuzzRead: any input either fails to read or reads into a run that renders to well-formed SVG.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"kind":"arm","arm":"a"}` + "\n" + `{"kind":"push","t":1,"d":2,"fate":"lost"}`))
	f.Add([]byte(`{"kind":"arm","arm":"<x>"}` + "\n" + `{"kind":"route","t":-1e9,"route":"old"}` + "\n" + `{"kind":"sigkill","t":1e9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		svg, err := SVG("fuzz", run)
		if err != nil {
			return
		}
		dec := xml.NewDecoder(bytes.NewReader(svg))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("not well-formed: %v\n%s", err, svg)
			}
		}
	})
}
