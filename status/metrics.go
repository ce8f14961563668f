package status

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prepcast/prepcast/state"
)

// Collector exports the status view as Prometheus metrics, computed afresh
// at every scrape from the store and the state database.
type Collector struct {
	// View builds the current view; Totals returns the audit history's
	// sums per target (nil when there is no database yet).
	View   func(ctx context.Context) (*View, error)
	Totals func(ctx context.Context) (map[string]state.Totals, error)
}

var (
	descLatestSeq  = prometheus.NewDesc("prepcast_latest_cut_seq", "Sequence number of the latest cut.", nil, nil)
	descLatestTime = prometheus.NewDesc("prepcast_latest_cut_timestamp_seconds", "When the latest cut was made (Unix time).", nil, nil)
	descAcked      = prometheus.NewDesc("prepcast_target_acked_seq", "Cut the target acknowledges (0: none).", []string{"target"}, nil)
	descLagCuts    = prometheus.NewDesc("prepcast_target_lag_cuts", "Cuts the target lacks.", []string{"target"}, nil)
	descLagSeconds = prometheus.NewDesc("prepcast_target_lag_seconds", "Seconds since the first cut the target lacks was made.", []string{"target"}, nil)
	descBehind     = prometheus.NewDesc("prepcast_target_behind", "1 when the target lags more than max_lag.", []string{"target"}, nil)
	descState      = prometheus.NewDesc("prepcast_target_state", "1 for the target's current state.", []string{"target", "state"}, nil)
	descBytes      = prometheus.NewDesc("prepcast_target_sent_bytes_total", "Payload bytes sent to the target.", []string{"target"}, nil)
	descFailures   = prometheus.NewDesc("prepcast_target_failed_attempts_total", "Push attempts to the target that failed.", []string{"target"}, nil)
	descAttempts   = prometheus.NewDesc("prepcast_target_attempts_total", "Push attempts to the target.", []string{"target"}, nil)
	descDuration   = prometheus.NewDesc("prepcast_target_last_push_duration_seconds", "Duration of the last successful push attempt.", []string{"target"}, nil)
	descVerified   = prometheus.NewDesc("prepcast_target_verified_files_total", "Files of the target read back and hashed by verification.", []string{"target"}, nil)
	descMismatches = prometheus.NewDesc("prepcast_target_verify_mismatches_total", "Files verification found missing or different from the signed cut on the target.", []string{"target"}, nil)
	descPending    = prometheus.NewDesc("prepcast_target_verify_pending_files", "Files found differing on the target and not repaired yet.", []string{"target"}, nil)
	descServedSeq  = prometheus.NewDesc("prepcast_target_served_seq", "Cut the target's public site served at its last check over HTTP (0: none).", []string{"target"}, nil)
	descServedOK   = prometheus.NewDesc("prepcast_target_served_ok", "1 when the last check found the site serving exactly a signed cut.", []string{"target"}, nil)
	descServedHTTP = prometheus.NewDesc("prepcast_target_served_http_errors", "HTTP errors (non-200 answers, failed transfers) at the last check of the public site.", []string{"target"}, nil)
	descServedMism = prometheus.NewDesc("prepcast_target_served_mismatches", "Files that differed from the signed cut at the last check of the public site.", []string{"target"}, nil)
	descNotServed  = prometheus.NewDesc("prepcast_target_acked_not_served", "1 when the target acknowledges a cut its public site does not serve.", []string{"target"}, nil)
	descLiteral    = prometheus.NewDesc("prepcast_target_delta_literal_bytes_total", "Bytes sent for files staged from ranges of the files the target served (included in sent bytes).", []string{"target"}, nil)
	descCopied     = prometheus.NewDesc("prepcast_target_delta_copied_bytes_total", "Bytes the target's server copied from the files it served (copy-data) instead of receiving them.", []string{"target"}, nil)
	descUp         = prometheus.NewDesc("prepcast_status_up", "1 when the status could be read.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLatestSeq, descLatestTime, descAcked, descLagCuts, descLagSeconds, descBehind,
		descState, descBytes, descFailures, descAttempts, descDuration, descVerified, descMismatches, descPending, descUp,
		descServedSeq, descServedOK, descServedHTTP, descServedMism, descNotServed, descLiteral, descCopied} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.View(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	if v.Latest != nil {
		ch <- prometheus.MustNewConstMetric(descLatestSeq, prometheus.GaugeValue, float64(v.Latest.Seq))
		ch <- prometheus.MustNewConstMetric(descLatestTime, prometheus.GaugeValue, float64(v.Latest.Created.Unix()))
	}
	var totals map[string]state.Totals
	if c.Totals != nil {
		totals, _ = c.Totals(ctx)
	}
	for _, t := range v.Targets {
		ch <- prometheus.MustNewConstMetric(descAcked, prometheus.GaugeValue, float64(t.AckedSeq), t.Name)
		ch <- prometheus.MustNewConstMetric(descLagCuts, prometheus.GaugeValue, float64(t.LagCuts), t.Name)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, t.LagSeconds, t.Name)
		ch <- prometheus.MustNewConstMetric(descBehind, prometheus.GaugeValue, b2f(t.Behind), t.Name)
		for _, s := range []string{StateOK, StatePushing, StateRetrying, StateFailing, StateInterrupted, StateBehind, StateNever, StateNotServed} {
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(t.State == s), t.Name, s)
		}
		if s := t.Served; s != nil {
			ch <- prometheus.MustNewConstMetric(descServedSeq, prometheus.GaugeValue, float64(s.Seq), t.Name)
			ch <- prometheus.MustNewConstMetric(descServedOK, prometheus.GaugeValue, b2f(s.OK), t.Name)
			ch <- prometheus.MustNewConstMetric(descServedHTTP, prometheus.GaugeValue, float64(s.HTTPErrors), t.Name)
			ch <- prometheus.MustNewConstMetric(descServedMism, prometheus.GaugeValue, float64(s.Mismatches), t.Name)
			ch <- prometheus.MustNewConstMetric(descNotServed, prometheus.GaugeValue, b2f(t.NotServed), t.Name)
		}
		tot := totals[t.Name]
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(tot.Bytes), t.Name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(tot.Failures), t.Name)
		ch <- prometheus.MustNewConstMetric(descAttempts, prometheus.CounterValue, float64(tot.Attempts), t.Name)
		ch <- prometheus.MustNewConstMetric(descDuration, prometheus.GaugeValue, tot.LastDuration, t.Name)
		var vr Verify
		if t.Verify != nil {
			vr = *t.Verify
		}
		ch <- prometheus.MustNewConstMetric(descVerified, prometheus.CounterValue, float64(vr.FilesChecked), t.Name)
		ch <- prometheus.MustNewConstMetric(descMismatches, prometheus.CounterValue, float64(vr.Mismatches), t.Name)
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(len(vr.Pending)), t.Name)
		ch <- prometheus.MustNewConstMetric(descLiteral, prometheus.CounterValue, float64(tot.Literal), t.Name)
		ch <- prometheus.MustNewConstMetric(descCopied, prometheus.CounterValue, float64(tot.Copied), t.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
