package loadtest

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Targets for a 2-core machine shared by server and load tool (issue 8).
const (
	TargetIdleBytesPerConn  = 10 << 10
	TargetOneToOnePerSecond = 20_000
	TargetOneToOneP99Ms     = 50
	TargetFanOutPerSecond   = 200_000
	TargetFanOutP99Ms       = 100
	TargetConnectsPerSecond = 5_000
)

// Results are one run's measurements; a nil scenario was not run.
type Results struct {
	Date      string           `json:"date"`
	Server    string           `json:"server"`
	Idle      *IdleResult      `json:"idle,omitempty"`
	OneToOne  *DeliveryResult  `json:"one_to_one,omitempty"`
	FanOut    *DeliveryResult  `json:"fan_out,omitempty"`
	Reconnect *ReconnectResult `json:"reconnect,omitempty"`
}

// JSON is the results, indented.
func (r *Results) JSON() ([]byte, error) { return encodeJSON(r) }

// WriteTable writes the results as a table: what was measured, the target
// and whether it was met.
func (r *Results) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	row := func(scenario, measured, target string, met bool) {
		verdict := "met"
		if !met {
			verdict = "MISSED"
		}
		if target == "" {
			verdict = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", scenario, measured, target, verdict)
	}
	fmt.Fprintf(tw, "scenario\tmeasured\ttarget\t\n")
	if i := r.Idle; i != nil {
		row("idle: connections", fmt.Sprintf("%d (up in %.1f s, %d workers)", i.Connections, i.ConnectSeconds, i.Workers), "", true)
		row("idle: RSS per connection", fmt.Sprintf("%.1f KiB (%.0f → %.0f MiB)", i.RSSPerConn/1024,
			float64(i.RSSBefore)/(1<<20), float64(i.RSSAfter)/(1<<20)), "≤ 10 KiB", i.RSSPerConn <= TargetIdleBytesPerConn)
		row("idle: Go heap per connection", fmt.Sprintf("%.1f KiB; %.0f goroutines, %.0f MiB stacks", i.HeapPerConn/1024,
			i.GoroutinesAfter, i.StacksAfter/(1<<20)), "", true)
	}
	delivery := func(d *DeliveryResult, rate, p99 float64) {
		name := d.Scenario
		row(name+": sends", fmt.Sprintf("%d ok, %d failed, %.0f/s; %d devices, %d in flight; envelopes of %d–%d B", d.Sends, d.FailedSends,
			d.SendsPerSec, d.Devices, d.Concurrency, d.ContentBytes[0], d.ContentBytes[1]), "", true)
		if d.Deliveries > 0 {
			row(name+": load tool CPU", fmt.Sprintf("%.2f s, %.1f µs per delivery", d.ToolCPU, d.ToolCPU*1e6/float64(d.Deliveries)), "", true)
		}
		row(name+": deliveries/s", fmt.Sprintf("%.0f (%d of %d; missing %d, duplicates %d, unexpected %d)",
			d.DeliveriesSec, d.Deliveries, d.Expected, d.Missing, d.Duplicates, d.Unexpected),
			fmt.Sprintf("≥ %.0f", rate), d.DeliveriesSec >= rate && d.Missing == 0 && d.Duplicates == 0)
		row(name+": latency p50/p99/max", fmt.Sprintf("%.1f / %.1f / %.1f ms (send request p50/p99 %.1f / %.1f ms)",
			d.P50, d.P99, d.Max, d.SendP50, d.SendP99), fmt.Sprintf("p99 ≤ %.0f ms", p99), d.P99 <= p99 && d.Deliveries > 0)
	}
	if d := r.OneToOne; d != nil {
		delivery(d, TargetOneToOnePerSecond, TargetOneToOneP99Ms)
	}
	if d := r.FanOut; d != nil {
		delivery(d, TargetFanOutPerSecond, TargetFanOutP99Ms)
	}
	if c := r.Reconnect; c != nil {
		row("reconnect: connects/s", fmt.Sprintf("%.0f (%d devices, %d at a time; all accepted %.2f s, all queue_empty %.2f s)",
			c.ConnectsPerSecond, c.Devices, c.Concurrency, c.AcceptSeconds, c.ReadySeconds), fmt.Sprintf("≥ %d", TargetConnectsPerSecond),
			c.ConnectsPerSecond >= TargetConnectsPerSecond)
		row("offline drain", fmt.Sprintf("%d queued (%.0f/s); every queue empty after %.2f s (%.0f/s); missing %d, duplicates %d, again after reconnect %d",
			c.Queued, c.QueuedPerSecond, c.DrainSeconds, c.DrainedPerSecond, c.Missing, c.Duplicates, c.RedeliveredAfter), "", true)
	}
	return tw.Flush()
}
