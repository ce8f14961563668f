package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/prepcast/prepcast/packager"
)

func init() {
	register(&command{name: "key", summary: "print the public key of the configured signing key and its fingerprint, for the institute to publish",
		examples: []string{"prepcast key --config /etc/prepcast/prepcast.yaml"},
		run:      func(_ context.Context, a []string, out, _ io.Writer) error { return cmdKey(a, out) }})
}

// cmdKey prints the public key of the configured signing key and its
// fingerprint, for the institute to publish on its own site.
func cmdKey(args []string, stdout io.Writer) error {
	fs := newFlags("key")
	cfgPath := fs.String("config", "prepcast.yaml", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if c.SigningKey == "" {
		return fmt.Errorf("%w: signing_key is not set (create a key with: prepcast keygen --out DIR)", errConfig)
	}
	priv, err := packager.LoadPrivateKey(c.SigningKey)
	if err != nil {
		return err
	}
	printPublicKey(stdout, priv.Public().(ed25519.PublicKey))
	return nil
}

// printPublicKey prints a public key as the institute publishes it: the
// PEM text and its fingerprint.
func printPublicKey(w io.Writer, pub ed25519.PublicKey) {
	fmt.Fprintf(w, "%s\nfingerprint: %s\n\n", packager.EncodePublicKey(pub), packager.Fingerprint(pub))
	fmt.Fprintln(w, "Publish both on the institute's own web site (not only on the difusores). Anyone can then check")
	fmt.Fprintln(w, "a difusor with: prepcast verify https://difusor.example/ --public-key manifest.pub")
	fmt.Fprintln(w, "The fingerprint is the SHA-256 of the key's DER form: openssl pkey -pubin -in manifest.pub -outform DER | sha256sum")
}
