package engine

import "testing"

// FuzzPointerRoundTrip: a token escaped by EscapePointer comes back whole from SplitPointer,
// whatever "~" and "/" it holds (an annotation key such as pushgateway-lifecycle.io/status).
func FuzzPointerRoundTrip(f *testing.F) {
	for _, s := range []string{"pushgateway-lifecycle.io/status", "a~1b", "~", "/", "~0~1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		got := SplitPointer("/metadata/" + EscapePointer(tok))
		if len(got) != 2 || got[0] != "metadata" || got[1] != tok {
			t.Errorf("SplitPointer(EscapePointer(%q)) = %q", tok, got)
		}
	})
}
