package server

import (
	"context"
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// metricValue reads one sample from /metrics text (the series' full name
// with its labels), or -1 when it is absent.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// TestDeliveryMetrics: a connection's backlog, the latency of envelopes
// sent while it is open (to the frame and to the ack), and the store's
// latency, as /metrics shows them after a send and a receive.
func TestDeliveryMetrics(t *testing.T) {
	closed := make(chan string, 1)
	e := newEnv(t, nil, func(s *Server) { s.onWSClose = func(reason string) { closed <- reason } })
	alice := e.register("alice", 20, 20)
	bob := e.register("bob", 20, 20)
	before := e.metrics()
	for _, series := range []string{
		`doorless_delivery_backlog_envelopes_count`,
		`doorless_delivery_latency_seconds_count{stage="written"}`,
		`doorless_delivery_latency_seconds_count{stage="acked"}`,
		`doorless_store_operation_duration_seconds_count{op="Enqueue"}`,
		`doorless_store_operation_duration_seconds_count{op="AckMany"}`,
		`doorless_messages_acked_total`,
	} {
		if v := metricValue(t, before, series); v > 0 {
			t.Fatalf("%s is %v before any delivery", series, v)
		}
	}
	if v := metricValue(t, before, `doorless_store_operation_duration_seconds_count{op="CreateAccount"}`); v != 2 {
		t.Fatalf("CreateAccount measured %v times, want 2", v)
	}

	// Two envelopes wait for bob: his connection's backlog, not counted
	// in the latency.
	e.sendOK(alice, bob, "one")
	e.sendOK(alice, bob, "two")
	c := e.dial(bob)
	for range 2 {
		f := readType(t, c, api.FrameEnvelope)
		ack(t, c, f.Envelope.ID)
	}
	readType(t, c, api.FrameQueueEmpty)
	// One sent while he is connected: counted.
	e.sendOK(alice, bob, "three")
	f := readType(t, c, api.FrameEnvelope)
	ack(t, c, f.Envelope.ID)
	c.Close(websocket1000, "")
	<-closed // the handler is done, and its reader with it

	m := e.metrics()
	for series, want := range map[string]float64{
		`doorless_delivery_backlog_envelopes_count`:                     1,
		`doorless_delivery_backlog_envelopes_sum`:                       2,
		`doorless_delivery_backlog_envelopes_bucket{le="1"}`:            0,
		`doorless_delivery_backlog_envelopes_bucket{le="4"}`:            1,
		`doorless_delivery_latency_seconds_count{stage="written"}`:      1,
		`doorless_delivery_latency_seconds_count{stage="acked"}`:        1,
		`doorless_store_operation_duration_seconds_count{op="Enqueue"}`: 3,
		`doorless_messages_acked_total`:                                 3,
		`doorless_store_errors_total{op="Enqueue"}`:                     0,
	} {
		if got := metricValue(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// Acks are applied in batches: those that arrive while one commits go
	// in the next.
	if v := metricValue(t, m, `doorless_store_operation_duration_seconds_count{op="AckMany"}`); v < 1 || v > 3 {
		t.Errorf("AckMany measured %v times for 3 acks", v)
	}
	// One read at connect; the live envelope was handed over, not read.
	if v := metricValue(t, m, `doorless_store_operation_duration_seconds_count{op="Queue"}`); v != 1 {
		t.Errorf("Queue measured %v times, want 1", v)
	}
	written := metricValue(t, m, `doorless_delivery_latency_seconds_sum{stage="written"}`)
	acked := metricValue(t, m, `doorless_delivery_latency_seconds_sum{stage="acked"}`)
	if written < 0 || acked < written {
		t.Errorf("latency to the frame %v, to the ack %v", written, acked)
	}
}

// answeringStore answers Device with ErrNotFound, Queue with a failure, and
// AckMany with the caller's cancellation; nothing else is called.
type answeringStore struct{ store.Store }

var errDisk = errors.New("disk on fire")

func (answeringStore) Device(context.Context, string, uint32) (*store.Device, error) {
	return nil, store.ErrNotFound
}
func (answeringStore) Queue(context.Context, string, uint32, int64, int) ([]store.Envelope, error) {
	return nil, errDisk
}
func (answeringStore) AckMany(ctx context.Context, _ []store.AckRef) (int, error) {
	return 0, ctx.Err()
}

// TestStoreMetrics: every call is timed; only failures count as errors,
// not the store's answers nor a request that went away.
func TestStoreMetrics(t *testing.T) {
	met, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st := measureStore(answeringStore{}, met)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Device(ctx, "a", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Device: %v", err)
	}
	if _, err := st.Queue(ctx, "a", 1, 0, 1); !errors.Is(err, errDisk) {
		t.Fatalf("Queue: %v", err)
	}
	if _, err := st.AckMany(ctx, []store.AckRef{{AccountID: "a", DeviceID: 1, EnvelopeID: "x"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AckMany: %v", err)
	}
	for op, want := range map[string]float64{"Device": 0, "Queue": 1, "AckMany": 0} {
		if got := testutil.ToFloat64(met.storeErrors.WithLabelValues(op)); got != want {
			t.Errorf("errors of %s: %v, want %v", op, got, want)
		}
	}
	if n := testutil.CollectAndCount(met.storeDuration); n != len(storeOps) {
		t.Errorf("%d duration series, want one per operation (%d)", n, len(storeOps))
	}
	for _, op := range []string{"Device", "Queue", "AckMany"} {
		h := met.storeDuration.WithLabelValues(op).(prometheus.Histogram)
		if got := testutil.CollectAndCount(h); got != 1 {
			t.Fatalf("%s: %d series", op, got)
		}
	}
}

// TestStoreOps: storeOps names every method of store.Store but Close, once.
func TestStoreOps(t *testing.T) {
	typ := reflect.TypeFor[store.Store]()
	var methods []string
	for i := range typ.NumMethod() {
		if name := typ.Method(i).Name; name != "Close" {
			methods = append(methods, name)
		}
	}
	ops := slices.Sorted(slices.Values(storeOps))
	if !slices.Equal(ops, methods) {
		t.Fatalf("storeOps %v,\nstore.Store has %v", ops, methods)
	}
}

// TestMetricsDocumented: docs/api.md lists every metric the server
// registers.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Store: answeringStore{}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Gather skips vectors without a series yet: ask the registry for
	// every description instead.
	ch := make(chan *prometheus.Desc)
	go func() {
		defer close(ch)
		met, _ := newMetrics(prometheus.NewRegistry())
		for _, c := range []prometheus.Collector{met.requests, met.duration, met.enqueued, met.delivered, met.acked,
			met.expired, met.websockets, met.wsClosed, met.rateLimited, met.deliveryLatency, met.backlog,
			met.storeDuration, met.storeErrors, met.ktEpochs, met.ktEntries, met.ktPending, met.ktUpdates,
			met.ktFailures, met.ktLastEpoch, met.ktEmptyEpochs} {
			c.Describe(ch)
		}
	}()
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for d := range ch {
		m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %v", d)
		}
		names[m[1]] = true
	}
	if len(names) < 20 {
		t.Fatalf("only %d metrics found", len(names))
	}
	for name := range names {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/api.md does not list %s", name)
		}
	}
}
