package server

import (
	"fmt"
	"time"

	"github.com/doorless/doorless/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. Labels are route patterns,
// status codes and fixed reasons: never a username, an id, a key or content.
type metrics struct {
	requests    *prometheus.CounterVec   // route, status
	duration    *prometheus.HistogramVec // route
	enqueued    prometheus.Counter
	delivered   prometheus.Counter
	acked       prometheus.Counter
	expired     prometheus.Counter
	websockets  prometheus.Gauge
	wsClosed    *prometheus.CounterVec // reason
	rateLimited *prometheus.CounterVec // scope: ip, account, recipient

	// Delivery: latency from the send's acceptance to the envelope's
	// frame (stage "written") and to its acknowledgement ("acked"), and
	// the backlog a connection found (storemetrics.go: the store's
	// latency).
	deliveryLatency *prometheus.HistogramVec // stage
	latWritten      prometheus.Observer
	latAcked        prometheus.Observer
	backlog         prometheus.Histogram
	storeDuration   *prometheus.HistogramVec // op
	storeErrors     *prometheus.CounterVec   // op

	// Key transparency.
	ktEpochs   prometheus.Gauge
	ktEntries  prometheus.Gauge
	ktPending  prometheus.Gauge
	ktUpdates  prometheus.Counter
	ktFailures prometheus.Counter
	// ktLastEpoch and ktEmptyEpochs: the log's freshness.
	ktLastEpoch   prometheus.Gauge
	ktEmptyEpochs prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doorless_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "doorless_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request (for the WebSocket: the connection's life), by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_messages_enqueued_total",
			Help: "Envelopes queued, one per recipient device.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_messages_delivered_total",
			Help: "Envelope frames written to WebSockets (redeliveries included).",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_messages_acked_total",
			Help: "Envelopes acknowledged and deleted.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_messages_expired_total",
			Help: "Envelopes deleted undelivered after the message TTL.",
		}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "doorless_websockets_open",
			Help: "Delivery WebSockets open.",
		}),
		wsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doorless_websocket_closes_total",
			Help: "Delivery WebSockets closed, by reason.",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doorless_rate_limited_total",
			Help: "Requests refused by a rate limit, by scope (ip, account, or recipient for unidentified sends).",
		}, []string{"scope"}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "doorless_delivery_latency_seconds",
			Help: "From a send's acceptance (the envelope's server timestamp, in milliseconds) to its envelope written to the " +
				"recipient device's WebSocket (stage written) and acknowledged (stage acked); only envelopes queued while " +
				"the device was connected, so it measures the server, not how long devices stay offline.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"stage"}),
		backlog: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "doorless_delivery_backlog_envelopes",
			Help:    "Envelopes a delivery WebSocket sent before its queue_empty frame: the device's queue depth when it connected.",
			Buckets: []float64{0, 1, 4, 16, 64, 256, 1024, 4096, 16384},
		}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "doorless_store_operation_duration_seconds",
			Help:    "Time of one store call, by operation (the store method).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doorless_store_errors_total",
			Help: "Store calls that failed (not counting the store's answers such as not found, full queue or duplicate), by operation.",
		}, []string{"op"}),
		ktEpochs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "doorless_transparency_epochs",
			Help: "Epochs in the key-transparency log (its size).",
		}),
		ktEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "doorless_transparency_entries",
			Help: "Entries (labels) in the key-transparency log's prefix tree.",
		}),
		ktPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "doorless_transparency_pending_updates",
			Help: "Account changes waiting to be published, as the sequencer last read them (at most one epoch's worth).",
		}),
		ktUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_transparency_updates_total",
			Help: "Entries published in the key-transparency log.",
		}),
		ktFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_transparency_epoch_failures_total",
			Help: "Epochs that could not be made or stored (retried).",
		}),
		ktLastEpoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "doorless_transparency_last_epoch_timestamp_seconds",
			Help: "When the key-transparency log's newest epoch was made (Unix seconds); clients refuse a log whose newest epoch is an hour old.",
		}),
		ktEmptyEpochs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doorless_transparency_empty_epochs_total",
			Help: "Epochs made with no change, to keep the log fresh (one every epoch interval without changes).",
		}),
	}
	m.latWritten = m.deliveryLatency.WithLabelValues("written")
	m.latAcked = m.deliveryLatency.WithLabelValues("acked")
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.enqueued, m.delivered,
		m.acked, m.expired, m.websockets, m.wsClosed, m.rateLimited,
		m.deliveryLatency, m.backlog, m.storeDuration, m.storeErrors,
		m.ktEpochs, m.ktEntries, m.ktPending, m.ktUpdates, m.ktFailures, m.ktLastEpoch, m.ktEmptyEpochs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %v", err)
		}
	}
	return m, nil
}

// live reports whether an envelope was queued while its device's connection
// was open (opened: when it opened; server timestamps are whole
// milliseconds): only those count in the delivery latency.
func (m *metrics) live(e *store.Envelope, opened time.Time) bool {
	return !e.ServerTimestamp.Before(opened.Truncate(time.Millisecond))
}

// since observes the time from start to now in o.
func (m *metrics) since(o prometheus.Observer, start, now time.Time) {
	o.Observe(max(now.Sub(start), 0).Seconds())
}
