package broker_test

import (
	"testing"

	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/broker/brokertest"
)

func TestMemoryConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) brokertest.Cluster {
		return brokertest.Cluster{Nodes: []broker.Broker{broker.NewMemory()}}
	})
}

// TestMemoryZero: the zero value is ready to use.
func TestMemoryZero(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) brokertest.Cluster {
		return brokertest.Cluster{Nodes: []broker.Broker{new(broker.Memory)}}
	})
}

func TestSignalString(t *testing.T) {
	for s, want := range map[broker.Signal]string{0: "none", broker.Mail: "mail", broker.Mail | broker.Displaced: "mail|displaced",
		broker.Provisioned: "provisioned", 1 << 7: "unknown"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
}
