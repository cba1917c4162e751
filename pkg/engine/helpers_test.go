package engine

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
)

func podJSON(p *corev1.Pod) string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}
