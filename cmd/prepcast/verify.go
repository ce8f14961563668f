package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/prepcast/prepcast/internal/i18n"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/internal/webfetch"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/verify"
)

// errMismatch is returned by verify for a site that does not serve exactly
// a signed cut: exit 1, the report already said why.
var errMismatch = fmt.Errorf("%w: the site does not serve exactly a signed cut", errFailed)

// unreachableError is returned by verify for a site it could not reach
// (exit 2); verify has already said so.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// userAgent names prepcast and its version in every request it makes to a
// public site.
func userAgent() string { return "prepcast/" + version + " (+https://github.com/prepcast/prepcast)" }

// newWebClient is the HTTP client for public sites.
func newWebClient() *webfetch.Client { return webfetch.New(webfetch.Options{UserAgent: userAgent()}) }

func init() {
	register(&command{name: "verify", synopsis: "URL", summary: "for anyone: check that a site serves exactly a cut signed by the institute's key (exit 0 yes; 1 a mismatch or a bad signature; 2 usage or unreachable)",
		required: []string{"public-key"},
		examples: []string{
			"prepcast verify https://prep.diario.example/ --public-key instituto.pub",
			"prepcast verify https://prep.diario.example/ --public-key instituto.pub --full --lang en",
			"prepcast verify https://prep.diario.example/ --public-key instituto.pub --json | jq .mismatches",
		},
		run: cmdVerify})
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify")
	keyPath := fs.String("public-key", "", "the institute's public key (PEM file it publishes)")
	full := fs.Bool("full", false, "hash every file, not a sample of the images")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	langFlag := fs.String("lang", "", "language of the report: es (default from LANG) or en")
	// The URL may come before or after the flags.
	var url string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		url, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &helpRequest{fs}
		}
		return &usageError{err.Error()}
	}
	rest := fs.Args()
	if url == "" && len(rest) > 0 {
		url, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return &usageError{fmt.Sprintf("verify: unexpected argument %q", rest[0])}
	}
	if url == "" || *keyPath == "" {
		return &usageError{"verify: give the site's URL and --public-key FILE (the institute's published key)"}
	}
	lang := i18n.FromEnv()
	if *langFlag != "" {
		l, err := i18n.Parse(*langFlag)
		if err != nil {
			return &usageError{"verify: --lang: " + err.Error()}
		}
		lang = l
	}
	pub, err := packager.LoadPublicKey(*keyPath)
	if err != nil {
		return &usageError{fmt.Sprintf("verify: --public-key %s: %v", *keyPath, err)}
	}
	client := newWebClient()
	defer client.CloseIdle()
	rep, err := verify.Run(ctx, verify.Options{URL: url, PublicKey: pub, Client: client, Full: *full})
	switch {
	case errors.Is(err, verify.ErrUsage):
		return &usageError{"verify: " + err.Error()}
	case errors.Is(err, webfetch.ErrUnreachable):
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(map[string]any{"url": url, "unreachable": true, "error": err.Error()})
		} else {
			fmt.Fprintln(stdout, lang.T("verify.unreachable", termsafe.String(err.Error())))
		}
		return &unreachableError{err}
	case err != nil:
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeVerifyReport(stdout, rep, lang, pub)
	}
	if !rep.OK() {
		return errMismatch
	}
	return nil
}

// writeVerifyReport prints the report for a reader, in lang. Everything
// that came from the site is escaped.
func writeVerifyReport(w io.Writer, rep *verify.Report, l i18n.Lang, pub ed25519.PublicKey) {
	fmt.Fprintln(w, l.T("verify.title", termsafe.String(rep.URL)))
	fmt.Fprintln(w, l.T("verify.key", packager.Fingerprint(pub)))
	if rep.Seq > 0 {
		fmt.Fprintln(w, l.T("verify.cut", l.Int(rep.Seq), termsafe.String(rep.ID), l.Date(rep.Created), l.Duration(rep.Age)))
		key := "verify.checked.sample"
		if rep.Full {
			key = "verify.checked.full"
		}
		fmt.Fprintln(w, l.T(key, l.Int(int64(rep.Checked)), l.Int(int64(rep.FilesInCut)), l.Int(rep.CheckedBytes)))
	}
	if rep.Attempts > 1 {
		fmt.Fprintln(w, l.T("verify.attempts", rep.Attempts))
	}
	if rep.Problem != "" {
		fmt.Fprintln(w, l.T("verify.problem."+rep.Problem))
		if rep.ProblemStatus != 0 {
			fmt.Fprintln(w, "  "+l.T("verify.http", rep.ProblemStatus))
		}
		if rep.ProblemDetail != "" {
			fmt.Fprintln(w, "  "+l.T("verify.detail", termsafe.String(rep.ProblemDetail)))
		}
	}
	if len(rep.Mismatches) > 0 {
		fmt.Fprintln(w, l.T("verify.mismatches", l.Int(int64(len(rep.Mismatches)))))
		for _, m := range rep.Mismatches {
			line := fmt.Sprintf("  %-12s %s", l.T("verify.kind."+string(m.Kind)), termsafe.String(m.Path))
			if m.Status != 0 {
				line += " (" + l.T("verify.http", m.Status) + ")"
			}
			if m.Detail != "" {
				line += ": " + termsafe.String(m.Detail)
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, wn := range rep.Warnings {
		switch wn.Code {
		case verify.WarnCacheControlMissing:
			fmt.Fprintln(w, l.T("verify.warn.cache_control_missing", verify.DefaultPointer, verify.WantCacheControl))
		case verify.WarnCacheControlWeak:
			fmt.Fprintln(w, l.T("verify.warn.cache_control_weak", verify.DefaultPointer, termsafe.String(wn.Value), verify.WantCacheControl))
		}
	}
	if rep.OK() {
		fmt.Fprintln(w, l.T("verify.ok"))
	} else {
		fmt.Fprintln(w, l.T("verify.fail"))
	}
}
