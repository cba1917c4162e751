package certs

import (
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The replica under test in rollover_test.go: the one place those tests touch the
// rotator's construction, so that the same tests can be run against earlier versions.
const roGrace = 5 * time.Second

func roReplica(t *testing.T, reader client.Reader, writer client.Writer, dir string, clk clock.PassiveClock) *rotator {
	t.Helper()
	o := Options{Namespace: roNS, SecretName: roSecret, ServiceName: roService,
		MutatingWebhookName: roConfig, ValidatingWebhookName: roConfig,
		CAValidity: time.Hour, CertValidity: 9 * time.Minute, RolloverGrace: roGrace, CertDir: dir}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	return newRotator(o, reader, writer, logr.Discard(), clk)
}
