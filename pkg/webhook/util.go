package webhook

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushgateway-lifecycle/pushgateway-lifecycle/pkg/annotations"
)

func truncate(s string) string { return annotations.Truncate(s) }

func statusOf(e *badRequest) *metav1.Status {
	return &metav1.Status{Status: metav1.StatusFailure, Code: e.code, Message: e.msg}
}
