package webhook

import (
	"bytes"
	"io"
	"net/http"
)

// Floor is the benchmark-only handler behind the hidden --floor flag: the lower bound for
// any handler on this server, with no JSON decoding at all. It reads the body (as any handler
// must, to keep the connection reusable) and answers allowed. The request's uid, which the
// API server requires back, is found by a byte search: the API server encodes
// request.uid as the request's first field, long before the object.
type Floor struct{}

var (
	uidKey      = []byte(`"uid":"`)
	floorPrefix = []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"`)
	floorSuffix = []byte(`","allowed":true}}` + "\n")
)

func (Floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := bodyPool.Get().(*bytes.Buffer)
	defer putBody(buf)
	buf.Reset()
	_, _ = buf.ReadFrom(io.LimitReader(r.Body, MaxRequestBytes+1))
	body := buf.Bytes()
	var uid []byte
	if i := bytes.Index(body, uidKey); i >= 0 {
		rest := body[i+len(uidKey):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 && j <= 128 {
			uid = rest[:j]
		}
	}
	w.Header().Set("Content-Type", "application/json")
	out := make([]byte, 0, len(floorPrefix)+len(uid)+len(floorSuffix))
	out = append(append(append(out, floorPrefix...), uid...), floorSuffix...)
	_, _ = w.Write(out)
}
