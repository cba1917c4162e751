// Package timeline is the record of one Pushgateway pod replacement (what the termination
// experiment in test/termination saw, as JSON lines) and its picture: an SVG timeline drawn
// from nothing but those events, so the picture committed under docs/ cannot say more or less
// than the log beside it. It is report code for the proof, not part of the shipped binary.
package timeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// Kind says what an event is. Times are seconds from the pod's deletion (real time).
type Kind string

// The events one arm records.
const (
	// KindArm is the first line of a log: the arm's name, pod spec and run conditions.
	KindArm Kind = "arm"
	// KindRoute is the Service's endpoint changing: Route is RouteOld, RouteNone or RouteNew.
	KindRoute Kind = "route"
	// KindDeleted is the pod's deletion: t = 0 by definition.
	KindDeleted Kind = "deleted"
	// KindPreStop is the preStop hook starting (only when the pod spec has one).
	KindPreStop Kind = "prestop"
	// KindSIGTERM is the container getting SIGTERM (the preStop hook ended or was cut).
	KindSIGTERM Kind = "sigterm"
	// KindPersistStart is the shutdown persist's temporary file appearing.
	KindPersistStart Kind = "persist-start"
	// KindPersistEnd is the temporary file renamed over the persistence file: the store is safe.
	KindPersistEnd Kind = "persist-end"
	// KindExit is the old process exiting by itself.
	KindExit Kind = "exit"
	// KindSIGKILL is the kubelet's SIGKILL at the end of the stop window.
	KindSIGKILL Kind = "sigkill"
	// KindNewStart is the replacement process starting (Recreate: after the old one is gone).
	KindNewStart Kind = "new-start"
	// KindNewServing is the replacement answering /-/ready: it has restored the store.
	KindNewServing Kind = "new-serving"
	// KindPush is one push: T is when it was sent, D how long until the answer, Fate what became of it.
	KindPush Kind = "push"
	// KindEnd is the end of the recording (the load stopped).
	KindEnd Kind = "end"
)

// Routes of the Service (the values of Event.Route).
const (
	RouteOld  = "old"
	RouteNone = "none"
	RouteNew  = "new"
)

// Fate is what became of a push, from the client's answer and the replacement's store.
type Fate string

// The fates of a push.
const (
	FateAckOld     Fate = "ack-old"     // 2xx from the old pod, and the replacement has it
	FateRefused    Fate = "refused"     // connection refused or reset by the old pod
	FateNoEndpoint Fate = "no-endpoint" // 503 from the Service: no endpoint
	FateAckNew     Fate = "ack-new"     // 2xx from the replacement
	FateLost       Fate = "lost"        // 2xx, but the replacement does not have it
	FateOther      Fate = "other"       // anything else (a client timeout, a 4xx); the experiment expects none
)

// Fates lists the fates in legend order.
var Fates = []Fate{FateAckOld, FateRefused, FateNoEndpoint, FateAckNew, FateLost, FateOther}

// Event is one line of the log.
type Event struct {
	Kind Kind    `json:"kind"`
	T    float64 `json:"t"`
	// Push only: seconds until the answer, the client (one push at a time each) and the fate.
	D      float64 `json:"d,omitempty"`
	Pusher int     `json:"pusher,omitempty"`
	Fate   Fate    `json:"fate,omitempty"`
	// Route only.
	Route string `json:"route,omitempty"`
	// Arm only: the arm's name, its pod spec in words, and the run conditions.
	Arm  string `json:"arm,omitempty"`
	Spec string `json:"spec,omitempty"`
	Note string `json:"note,omitempty"`
}

// Seconds rounds a time to the millisecond the log keeps, so that a log written and read back
// renders to the same bytes as the run that wrote it.
func Seconds(s float64) float64 { return math.Round(s*1000) / 1000 }

// Run is one arm's log: the KindArm header and the events in time order.
type Run struct {
	Arm, Spec, Note string
	Events          []Event
}

// Write writes the log as JSON lines: the header, then the events sorted by time (pushes after
// the other events of the same millisecond), so a log's bytes depend only on what happened.
func Write(w io.Writer, r *Run) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(Event{Kind: KindArm, Arm: r.Arm, Spec: r.Spec, Note: r.Note}); err != nil {
		return err
	}
	events := append([]Event(nil), r.Events...)
	for i := range events {
		events[i].T, events[i].D = Seconds(events[i].T), Seconds(events[i].D)
	}
	sort.SliceStable(events, func(i, j int) bool {
		a, b := events[i], events[j]
		if a.T != b.T {
			return a.T < b.T
		}
		return a.Kind != KindPush && b.Kind == KindPush
	})
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Read parses a log written by Write. Unknown kinds and fates are errors: a picture drawn from
// a log it does not understand would be wrong without saying so.
func Read(rd io.Reader) (*Run, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	var r *Run
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if r == nil {
			if e.Kind != KindArm {
				return nil, fmt.Errorf("line %d: kind %q: the first line must be kind %q", line, e.Kind, KindArm)
			}
			r = &Run{Arm: e.Arm, Spec: e.Spec, Note: e.Note}
			continue
		}
		if err := valid(e); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		r.Events = append(r.Events, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("empty log: want a first line of kind \"arm\"")
	}
	return r, nil
}

// Bounds a log must keep: a day either side of the deletion, a few hundred clients. A log
// beyond them is not one the experiment wrote, and drawing it would take unbounded memory.
const (
	maxSeconds = 86400
	maxPushers = 256
)

func valid(e Event) error {
	if math.Abs(e.T) > maxSeconds || e.D < 0 || e.D > maxSeconds {
		return fmt.Errorf("kind %q at t=%v, d=%v: times must be within ±%d s and durations from 0 to %d s", e.Kind, e.T, e.D, maxSeconds, maxSeconds)
	}
	if e.Pusher < 0 || e.Pusher >= maxPushers {
		return fmt.Errorf("pusher %d: want 0 to %d", e.Pusher, maxPushers-1)
	}
	switch e.Kind {
	case KindPush:
		for _, f := range Fates {
			if e.Fate == f {
				return nil
			}
		}
		return fmt.Errorf("push fate %q: want one of %v", e.Fate, Fates)
	case KindRoute:
		switch e.Route {
		case RouteOld, RouteNone, RouteNew:
			return nil
		}
		return fmt.Errorf("route %q: want %q, %q or %q", e.Route, RouteOld, RouteNone, RouteNew)
	case KindDeleted, KindPreStop, KindSIGTERM, KindPersistStart, KindPersistEnd, KindExit, KindSIGKILL,
		KindNewStart, KindNewServing, KindEnd:
		return nil
	case KindArm:
		return errors.New(`kind "arm" after the first line`)
	}
	return fmt.Errorf("kind %q is not an event this package knows", e.Kind)
}
