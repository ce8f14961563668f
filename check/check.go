// Package check measures a difusor against the call for difusores (IEE
// Puebla 2024, sections 1.5–1.6 and 2) before election night: SSH access
// with the pinned host key, the SFTP features and sessions prepcast relies
// on, free disk, the sustained upload rate, that the web server serves what
// SFTP writes, the Cache-Control rule on json/main.json, the HTTPS
// certificate and the difusor's clock.
//
// A [Row] is one requirement with its measured value, its threshold and a
// [Verdict]. [Run] checks several difusores concurrently (their upload
// tests one at a time, so that each measures the difusor's link and not a
// share of the institute's uplink) and returns a [Result], whose JSON form
// (schema [Schema]) is "prepcast check --json".
//
// A check leaves the difusor's site as it found it: it writes only below
// root/.prepcast/check-<random>/ (prepcast's private area, never a staging
// name, the ack or a pointer) and one probe file
// root/.well-known/prepcast/check-<random>.txt, and removes them, and any
// directory it had to create, before it returns. It does not take the push
// lock, so it may run while the daemon publishes; its upload test then
// competes with the push for bandwidth, so the figure it reports is lower.
package check

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/packager"
)

// Schema names the JSON layout of [Result].
const Schema = "prepcast-check/1"

// Verdict is a requirement's outcome.
type Verdict string

// Verdicts. A difusor passes when no row is FAIL.
const (
	Pass Verdict = "PASS"
	Warn Verdict = "WARN"
	Fail Verdict = "FAIL"
)

// Row IDs: one per requirement, stable in the JSON document.
const (
	RowOS             = "os"
	RowWebServer      = "web_server"
	RowSSHReach       = "ssh_reach"
	RowSSHHostKey     = "ssh_host_key"
	RowSSHAuth        = "ssh_auth"
	RowSFTPExtensions = "sftp_extensions"
	RowSFTPSessions   = "sftp_sessions"
	RowPushMode       = "push_mode"
	RowFreeDisk       = "free_disk"
	RowRetainedCuts   = "retained_cuts"
	RowUploadRate     = "upload_rate"
	RowReadBackRate   = "read_back_rate"
	RowWriteRename    = "write_rename_delete"
	RowFileModes      = "file_modes"
	RowCacheControl   = "cache_control"
	RowHTTPSCert      = "https_cert"
	RowClockSkew      = "clock_skew"
)

// callSection maps a row to the item of the call's section 2 it proves.
var callSection = map[string]string{
	RowOS: "2a", RowWebServer: "2b", RowFreeDisk: "2c", RowUploadRate: "2d", RowCacheControl: "2e",
}

// Row is one requirement measured on one difusor.
type Row struct {
	ID        string   `json:"id"`
	Call      string   `json:"call,omitempty"` // the item of the call's section 2, e.g. "2c"
	Verdict   Verdict  `json:"verdict"`
	Value     string   `json:"value"`            // what was measured, as shown; "" when nothing could be
	Number    *float64 `json:"number,omitempty"` // the measured figure in Unit, for machines
	Unit      string   `json:"unit,omitempty"`   // "bytes", "bytes/s", "seconds", "sessions"
	Threshold string   `json:"threshold,omitempty"`
	Detail    string   `json:"detail,omitempty"` // why, in English; remote text escaped
	Fix       string   `json:"fix,omitempty"`    // what to do about a WARN or FAIL
}

// Difusor is the check of one target.
type Difusor struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name,omitempty"`
	Address     string    `json:"address"`
	Root        string    `json:"root"`
	URL         string    `json:"url,omitempty"`
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"`
	Passed      bool      `json:"passed"`
	Fails       int       `json:"fails"`
	Warns       int       `json:"warns"`
	Rows        []Row     `json:"rows"`
}

// Row returns the row with the given ID, or nil.
func (d *Difusor) Row(id string) *Row {
	for i := range d.Rows {
		if d.Rows[i].ID == id {
			return &d.Rows[i]
		}
	}
	return nil
}

// Thresholds are the limits a check applied.
type Thresholds struct {
	MinFreeDisk    int64     `json:"min_free_disk_bytes"`
	MinUploadRate  int64     `json:"min_upload_rate_bytes_per_second"`
	UploadTest     float64   `json:"upload_test_seconds"`
	PublicationEnd time.Time `json:"publication_end"`
}

// Result is the check of every difusor asked for.
type Result struct {
	Schema     string     `json:"schema"`
	Generated  time.Time  `json:"generated"`
	Passed     bool       `json:"passed"` // every difusor passed
	Thresholds Thresholds `json:"thresholds"`
	Difusores  []Difusor  `json:"difusores"`
}

// Options configure [Run].
type Options struct {
	Config  *config.Config
	Targets []*config.Target // the difusores to check, in order
	// Store is the local cut store, to estimate the room the retained cuts
	// need; nil or empty skips that estimate.
	Store *packager.Store
	// Passphrase returns the passphrase of a target's identity file (from
	// its passphrase_env); nil when none is needed.
	Passphrase func(t *config.Target) ([]byte, error)
	// UploadTest and PublicationEnd override the config's check section
	// when set.
	UploadTest     time.Duration
	PublicationEnd time.Time
	// Concurrency bounds the difusores checked at once; default 8.
	Concurrency int
	// RootCAs, when set, replaces the system's roots for HTTPS (tests).
	RootCAs *x509.CertPool
	Log     *zap.Logger
	Now     func() time.Time
}

// Run checks every difusor of o.Targets and returns one [Difusor] per
// target, in order. Problems of a difusor are rows, never an error; Run's
// error is for a ctx cancelled before anything was checked.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	c := o.Config
	th := Thresholds{MinFreeDisk: c.Check.MinFreeDisk, MinUploadRate: c.Check.MinUploadRate,
		UploadTest: c.Check.UploadTest.Seconds(), PublicationEnd: c.Check.PublicationEnd}
	if o.UploadTest > 0 {
		th.UploadTest = o.UploadTest.Seconds()
	}
	if !o.PublicationEnd.IsZero() {
		th.PublicationEnd = o.PublicationEnd
	}
	if th.PublicationEnd.IsZero() {
		now := o.Now().In(c.Zone)
		th.PublicationEnd = time.Date(now.Year(), time.June, 15, 23, 59, 0, 0, c.Zone)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &Result{Schema: Schema, Generated: o.Now().UTC(), Thresholds: th, Difusores: make([]Difusor, len(o.Targets))}
	r := &runner{o: o, th: th, web: newWebClient(c.Timeouts.Operation, o.RootCAs)}
	r.retained = retainedEstimate(o.Store, c.Retention.Cuts)
	var g errgroup.Group
	g.SetLimit(o.Concurrency)
	for i, tc := range o.Targets {
		g.Go(func() error {
			res.Difusores[i] = r.one(ctx, tc)
			return nil
		})
	}
	_ = g.Wait()
	res.Passed = true
	for _, d := range res.Difusores {
		res.Passed = res.Passed && d.Passed
	}
	return res, nil
}

// runner holds what the checks of one Run share.
type runner struct {
	o        Options
	th       Thresholds
	web      *webClient
	retained *retained
	uploadMu sync.Mutex // one upload test at a time
}

// tally sets d's verdict counts.
func (d *Difusor) tally() {
	d.Fails, d.Warns = 0, 0
	for _, r := range d.Rows {
		switch r.Verdict {
		case Fail:
			d.Fails++
		case Warn:
			d.Warns++
		}
	}
	d.Passed = d.Fails == 0
}

// randomName returns n random bytes in hex.
func randomName(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func num(f float64) *float64 { return &f }

// fmtBytes formats a size in GB (10^9 bytes), as the call writes "20 GB";
// below 1 GB in MB.
func fmtBytes(n int64) string {
	if n < 1e9 {
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

// fmtRate formats a rate in MB/s (10^6 bytes a second), as the call writes
// "40 MB/seg".
func fmtRate(bps float64) string { return fmt.Sprintf("%.1f MB/s", bps/1e6) }

// fmtKB formats a rate in KB/s, for rates far below the call's.
func fmtKB(bps float64) string { return fmt.Sprintf("%.1f KB/s", bps/1e3) }
