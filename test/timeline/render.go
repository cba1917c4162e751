package timeline

import (
	"bytes"
	_ "embed"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"
)

// The picture is plain SVG from a text/template rather than a plotting library (gonum.org/v1/plot
// was the candidate): what is drawn is lanes of intervals and marks, not a plot of functions, so a
// plotting library would contribute only its axes while adding a dependency tree (gonum, fonts,
// image codecs) to the module. A template over a list of rectangles and texts gives byte-stable
// output for the golden test, CSS classes for the colours, and a file GitHub shows as an image.

//go:embed timeline.svg.tmpl
var svgTemplate string

var tmpl = template.Must(template.New("timeline").Funcs(template.FuncMap{
	"x": func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	},
	"n":   num,
	"add": func(a, b float64) float64 { return a + b },
	"sub": func(a, b float64) float64 { return a - b },
}).Parse(svgTemplate))

// num formats a coordinate: one decimal, no trailing ".0", so output is stable and small.
func num(v float64) string {
	s := strconv.FormatFloat(math.Round(v*10)/10, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	if s == "-0" {
		s = "0"
	}
	return s
}

// Geometry, in SVG pixels. The figure is drawn 900 wide: GitHub shows a README image at about
// 830-880 pixels, so 15 px text stays 14 px or more there.
const (
	width      = 900.0
	labelRight = 196.0 // lane names end here
	plotLeft   = 208.0
	plotRight  = 872.0
	lanePitch  = 24.0
	barHeight  = 14.0
	rowPitch   = 11.0 // one row of pushes per client
	rowHeight  = 8.0
	titleSpace = 50.0 // arm name and summary above the lanes
	armGap     = 22.0
	maxTicks   = 12
)

type rect struct {
	X, Y, W, H float64
	Class      string
}

type line struct {
	X1, Y1, X2, Y2 float64
	Class          string
}

type mark struct { // a diamond centred on X, Y
	X, Y, R float64
	Class   string
}

type part struct {
	S, Class string
	Dx       float64 // space before the part (SVG collapses leading spaces)
}

type text struct {
	X, Y   float64
	Anchor string // start, end, middle
	Class  string
	Parts  []part
}

type figure struct {
	W, H   float64
	Title  string
	Lines  []line
	Rects  []rect
	Pushes []rect
	Marks  []mark
	Texts  []text
}

func (f *figure) text(x, y float64, anchor, class string, parts ...part) {
	f.Texts = append(f.Texts, text{X: x, Y: y, Anchor: anchor, Class: class, Parts: parts})
}

// axis maps seconds to x.
type axis struct{ t0, t1 float64 }

func (a axis) x(t float64) float64 {
	return plotLeft + (t-a.t0)/(a.t1-a.t0)*(plotRight-plotLeft)
}

func tickStep(span float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300} {
		if span/s <= maxTicks {
			return s
		}
	}
	return 600
}

// span is the time range the run covers: its first and last event (a push counts to its answer).
func span(r *Run) (lo, hi float64) {
	lo, hi = 0, 0
	for _, e := range r.Events {
		lo = min(lo, e.T)
		hi = max(hi, e.T+e.D)
	}
	return lo, hi
}

// SVG draws the runs one above the other on one time scale: lanes for the Service's routing
// and the old pod's termination, the replacement, and every push as a bar from its sending to
// its answer, coloured by its fate. It reads nothing but the runs.
func SVG(title string, runs ...*Run) ([]byte, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("no run to draw")
	}
	lo, hi := 0.0, 0.0
	for _, r := range runs {
		l, h := span(r)
		lo, hi = min(lo, l), max(hi, h)
	}
	step := tickStep(hi - lo)
	ax := axis{t0: math.Floor(lo/step) * step, t1: math.Ceil(hi/step) * step}
	if ax.t1 <= ax.t0 {
		ax.t1 = ax.t0 + step
	}

	f := &figure{W: width, Title: title}
	y := 34.0
	f.text(16, y, "start", "title", part{S: title})
	if note := runs[0].Note; note != "" {
		y += 21
		f.text(16, y, "start", "small", part{S: note})
	}
	y += 10
	blocks := make([][2]float64, 0, len(runs)) // the lane area of each arm, for the grid
	for _, r := range runs {
		top, bottom := drawRun(f, ax, r, y)
		blocks = append(blocks, [2]float64{top, bottom})
		y = bottom + armGap
	}

	// The grid and t = 0 go under everything, through every arm's lanes.
	var grid []line
	for _, b := range blocks {
		for t := ax.t0; t <= ax.t1+step/1000; t += step {
			class := "grid"
			if math.Abs(t) < step/1000 {
				class = "zero"
			}
			grid = append(grid, line{X1: ax.x(t), Y1: b[0] - 4, X2: ax.x(t), Y2: b[1] + 2, Class: class})
		}
	}
	f.Lines = append(grid, f.Lines...)

	// The axis, once, under the last arm.
	y -= armGap - 8
	f.Lines = append(f.Lines, line{X1: plotLeft, Y1: y, X2: plotRight, Y2: y, Class: "axis"})
	for t := ax.t0; t <= ax.t1+step/1000; t += step {
		f.Lines = append(f.Lines, line{X1: ax.x(t), Y1: y, X2: ax.x(t), Y2: y + 5, Class: "axis"})
		f.text(ax.x(t), y+21, "middle", "tick", part{S: num(t)})
	}
	f.text(plotLeft+(plotRight-plotLeft)/2, y+42, "middle", "label",
		part{S: "seconds since the pod was deleted (dashed line: t = 0)"})
	y += 66
	y = legend(f, y, runs)
	f.H = math.Ceil(y + 10)

	var b bytes.Buffer
	if err := tmpl.Execute(&b, f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// facts are the moments of one run the lanes are drawn from; ok is false when the log lacks them.
type facts struct {
	start, end             float64
	preStop, sigterm       float64
	hasPreStop, hasSIGTERM bool
	exit, kill             float64
	hasExit, hasKill       bool
	persistStart           float64
	persistEnd             float64
	hasPersist, persisted  bool
	newStart, newServing   float64
	hasNew, hasServing     bool
	routes                 []Event
	counts                 map[Fate]int
	pushes                 int
	pushers                int
}

func factsOf(r *Run) facts {
	fs := facts{counts: map[Fate]int{}}
	fs.start, fs.end = span(r)
	for _, e := range r.Events {
		switch e.Kind {
		case KindPreStop:
			fs.preStop, fs.hasPreStop = e.T, true
		case KindSIGTERM:
			fs.sigterm, fs.hasSIGTERM = e.T, true
		case KindExit:
			fs.exit, fs.hasExit = e.T, true
		case KindSIGKILL:
			fs.kill, fs.hasKill = e.T, true
		case KindPersistStart:
			fs.persistStart, fs.hasPersist = e.T, true
		case KindPersistEnd:
			fs.persistEnd, fs.persisted = e.T, true
		case KindNewStart:
			fs.newStart, fs.hasNew = e.T, true
		case KindNewServing:
			fs.newServing, fs.hasServing = e.T, true
		case KindRoute:
			fs.routes = append(fs.routes, e)
		case KindPush:
			fs.pushes++
			fs.counts[e.Fate]++
			fs.pushers = max(fs.pushers, e.Pusher+1)
		}
	}
	return fs
}

// routeSpans returns the intervals during which the Service routed to route.
func (fs facts) routeSpans(route string) [][2]float64 {
	var out [][2]float64
	for i, e := range fs.routes {
		if e.Route != route {
			continue
		}
		end := fs.end
		if i+1 < len(fs.routes) {
			end = fs.routes[i+1].T
		}
		out = append(out, [2]float64{e.T, end})
	}
	return out
}

func total(spans [][2]float64) float64 {
	var s float64
	for _, sp := range spans {
		s += sp[1] - sp[0]
	}
	return s
}

// textWidth estimates the width of s: about 0.58 em a character in the sans-serif fonts GitHub
// and rsvg pick, rounded up so that a label placed by it does not run into the next one.
func textWidth(s string, size float64) float64 { return float64(len([]rune(s))) * size * 0.6 }

func secs(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " s" }

// drawRun draws one arm from y down and returns the top and bottom of its lanes.
func drawRun(f *figure, ax axis, r *Run, y float64) (top, bottom float64) {
	fs := factsOf(r)
	y += 22
	f.text(16, y, "start", "arm", part{S: r.Arm}, part{S: r.Spec, Class: "spec", Dx: 12})
	y += 20
	acked := fs.counts[FateAckOld] + fs.counts[FateAckNew] + fs.counts[FateLost]
	noEP := total(fs.routeSpans(RouteNone))
	lost := part{S: fmt.Sprintf("%d lost", fs.counts[FateLost]), Class: "good"}
	if fs.counts[FateLost] > 0 {
		lost.Class = "bad"
	}
	refused := part{S: fmt.Sprintf("%d refused", fs.counts[FateRefused]), Class: "good"}
	if fs.counts[FateRefused] > 0 {
		refused.Class = "warn"
	}
	parts := []part{
		{S: fmt.Sprintf("%d pushes: ", fs.pushes)},
		refused,
		{S: fmt.Sprintf(" · %d answered 503 (no endpoint for %s) · %d acknowledged, of which ", fs.counts[FateNoEndpoint], secs(noEP), acked)},
		lost,
	}
	if n := fs.counts[FateOther]; n > 0 {
		parts = append(parts, part{S: fmt.Sprintf(" · %d other failures", n), Class: "bad"})
	}
	f.text(16, y, "start", "summary", parts...)
	y += titleSpace - 42 + 8
	top = y

	lane := func(name string) (float64, float64) { // the bar's top and its text baseline
		f.text(labelRight, y+barHeight-2.5, "end", "lane", part{S: name})
		barTop := y
		y += lanePitch
		return barTop, barTop + barHeight - 2.5
	}
	bar := func(t0, t1, top float64, class string) {
		x0, x1 := ax.x(t0), ax.x(t1)
		f.Rects = append(f.Rects, rect{X: x0, Y: top, W: max(x1-x0, 1.5), H: barHeight, Class: class})
	}
	// note puts a label right of the bar when it fits, else left of it.
	note := func(t0, t1, base float64, class, s string) {
		w := textWidth(s, 13.5)
		if x := ax.x(t1) + 6; x+w <= width-8 {
			f.text(x, base, "start", class, part{S: s})
			return
		}
		f.text(ax.x(t0)-6, base, "end", class, part{S: s})
	}
	none := func(base float64, s string) { f.text(ax.x(0)+6, base, "start", "none", part{S: s}) }

	// routed to the old pod
	bt, base := lane("routed to the old pod")
	old := fs.routeSpans(RouteOld)
	for _, sp := range old {
		bar(sp[0], sp[1], bt, "old")
	}
	if len(old) > 0 {
		last := old[len(old)-1][1]
		note(old[0][0], last, base, "note", "until "+secs(last))
	}

	// preStop
	bt, base = lane("preStop")
	if fs.hasPreStop && fs.hasSIGTERM {
		bar(fs.preStop, fs.sigterm, bt, "prestop")
		note(fs.preStop, fs.sigterm, base, "note", "sleeps "+secs(fs.sigterm-fs.preStop))
	} else {
		none(base, "none: SIGTERM at once")
	}

	// SIGTERM -> exit
	bt, base = lane("SIGTERM → exit")
	switch {
	case fs.hasSIGTERM && fs.hasExit:
		bar(fs.sigterm, fs.exit, bt, "stop")
		note(fs.sigterm, fs.exit, base, "note", "exits after "+secs(fs.exit-fs.sigterm))
	case fs.hasSIGTERM && fs.hasKill:
		bar(fs.sigterm, fs.kill, bt, "stop")
		note(fs.sigterm, fs.kill, base, "badnote", "killed after "+secs(fs.kill-fs.sigterm))
	}

	// persist
	bt, base = lane("persist")
	switch {
	case fs.hasPersist && fs.persisted:
		bar(fs.persistStart, fs.persistEnd, bt, "persist")
		note(fs.persistStart, fs.persistEnd, base, "note", "store written in "+secs(fs.persistEnd-fs.persistStart))
	case fs.hasPersist && fs.hasKill:
		bar(fs.persistStart, fs.kill, bt, "cut")
		note(fs.persistStart, fs.kill, base, "badnote", "cut by SIGKILL: not written")
	case fs.persisted:
		f.Marks = append(f.Marks, mark{X: ax.x(fs.persistEnd), Y: bt + barHeight/2, R: 5, Class: "persist"})
		note(fs.persistEnd, fs.persistEnd, base, "note", "store written (start not seen)")
	default:
		none(base, "not seen")
	}

	// SIGKILL
	bt, base = lane("SIGKILL")
	if fs.hasKill {
		f.Marks = append(f.Marks, mark{X: ax.x(fs.kill), Y: bt + barHeight/2, R: 8, Class: "kill"})
		f.text(ax.x(fs.kill)+12, base, "start", "badnote", part{S: "at " + secs(fs.kill)})
	} else {
		none(base, "none")
	}

	// replacement ready
	bt, base = lane("replacement ready")
	newSpans := fs.routeSpans(RouteNew)
	if fs.hasNew {
		ready := fs.end
		if len(newSpans) > 0 {
			ready = newSpans[0][0]
		}
		serving := ready
		if fs.hasServing {
			serving = fs.newServing
		}
		bar(fs.newStart, serving, bt, "restore")
		if ready > serving {
			bar(serving, ready, bt, "probe")
		}
		for _, sp := range newSpans {
			bar(sp[0], sp[1], bt, "new")
		}
		label := "starts " + secs(fs.newStart)
		if len(newSpans) > 0 {
			label += ", ready " + secs(ready)
		}
		// Left of the lane when there is room (the bar runs to the end of the recording),
		// else after it.
		if x := ax.x(fs.newStart) - 6; x-textWidth(label, 13.5) >= plotLeft {
			f.text(x, base, "end", "note", part{S: label})
		} else {
			f.text(ax.x(fs.end)+6, base, "start", "note", part{S: label})
		}
	} else {
		none(base, "not started")
	}

	// pushes: one row per client; a client sends its next push only after the previous answer,
	// so the bars of a row never overlap. Dense short failures are merged into runs.
	y += 2
	f.text(labelRight, y+rowPitch*float64(max(fs.pushers, 1))/2+4, "end", "lane", part{S: "pushes"})
	f.text(labelRight, y+rowPitch*float64(max(fs.pushers, 1))/2+19, "end", "small", part{S: fmt.Sprintf("%d clients", fs.pushers)})
	open := make([]*rect, fs.pushers)
	var lostMarks []mark
	flush := func(i int) {
		if open[i] != nil {
			f.Pushes = append(f.Pushes, *open[i])
			open[i] = nil
		}
	}
	minW := 1.5
	for _, e := range r.Events {
		if e.Kind != KindPush {
			continue
		}
		i := e.Pusher
		x0, x1 := ax.x(e.T), ax.x(e.T+e.D)
		rt := rect{X: x0, Y: y + float64(i)*rowPitch, W: max(x1-x0, minW), H: rowHeight, Class: "f-" + string(e.Fate)}
		switch e.Fate {
		case FateAckOld, FateAckNew, FateLost: // few and long: each one drawn, outlined
			flush(i)
			f.Pushes = append(f.Pushes, rt)
			if e.Fate == FateLost {
				lostMarks = append(lostMarks, mark{X: x0 + rt.W/2, Y: y + float64(fs.pushers)*rowPitch + 5, R: 4, Class: "lostmark"})
			}
		default:
			if o := open[i]; o != nil && o.Class == rt.Class && rt.X-(o.X+o.W) < 1 {
				o.W = max(o.W, rt.X+rt.W-o.X)
				continue
			}
			flush(i)
			open[i] = &rt
		}
	}
	for i := range open {
		flush(i)
	}
	f.Marks = append(f.Marks, lostMarks...)
	y += float64(fs.pushers)*rowPitch + 10
	return top, y
}

// legend draws the fates (with what each means) and returns the y below it.
func legend(f *figure, y float64, runs []*Run) float64 {
	present := map[Fate]bool{}
	for _, r := range runs {
		for _, e := range r.Events {
			if e.Kind == KindPush {
				present[e.Fate] = true
			}
		}
	}
	labels := map[Fate]string{
		FateAckOld:     "acknowledged by the old pod",
		FateRefused:    "refused / reset by the old pod",
		FateNoEndpoint: "503: no endpoint",
		FateAckNew:     "acknowledged by the new pod",
		FateLost:       "acknowledged but lost",
		FateOther:      "other failure",
	}
	f.text(16, y, "start", "lane", part{S: "Each push is a bar from its sending to its answer, coloured by what became of it:"})
	y += 12
	const columns, colWidth = 3, (width - 32) / 3
	col := 0
	for _, fate := range Fates {
		if fate == FateOther && !present[fate] {
			continue
		}
		if col == columns {
			col = 0
			y += 30
		}
		x := 16 + float64(col)*colWidth
		f.Rects = append(f.Rects, rect{X: x, Y: y + 2, W: 24, H: 12, Class: "f-" + string(fate)})
		if fate == FateLost {
			f.Marks = append(f.Marks, mark{X: x + 12, Y: y + 22, R: 4, Class: "lostmark"})
		}
		f.text(x+32, y+13, "start", "legend", part{S: labels[fate]})
		col++
	}
	y += 48
	f.text(16, y, "start", "small", part{S: "Lanes: the Service routing to the old pod; the old pod's preStop, SIGTERM to exit, shutdown persist and SIGKILL;"})
	y += 17
	f.text(16, y, "start", "small", part{S: "the replacement restoring the store (light), waiting for its readiness probe (outlined), then routed to (green)."})
	return y
}
