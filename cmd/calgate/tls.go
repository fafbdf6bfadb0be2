package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often the certificate files are looked at for a
// renewal.
const certCheckEvery = time.Minute

// certReloader serves the certificate in a pair of PEM files and picks up
// a renewed one without a restart: at most once a minute, on a handshake,
// it compares the files' modification times and sizes with those it
// loaded, and loads them again when they changed. A pair that does not
// load (a renewal caught half-written) keeps the previous certificate in
// service and is tried again at the next check.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex // protects the following
	cert    *tls.Certificate
	stamp   string // modification times and sizes of the loaded files
	checked time.Time
}

// newCertReloader loads the pair once; an error says which files and why.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := c.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load tls cert %s and key %s: %w (fix the tls paths or remove the tls key)", certFile, keyFile, err)
	}
	c.cert, c.stamp, c.checked = &cert, stamp, c.now()
	return c, nil
}

// fileStamp describes both files' modification times and sizes.
func (c *certReloader) fileStamp() (string, error) {
	var stamp string
	for _, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

// GetCertificate is the tls.Config hook.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.checked) < certCheckEvery {
		return c.cert, nil
	}
	c.checked = now
	stamp, err := c.fileStamp()
	if err != nil || stamp == c.stamp {
		if err != nil {
			c.log.Warn("tls certificate files unreadable; serving the loaded certificate", "err", err)
		}
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Warn("renewed tls certificate does not load; serving the previous one", "cert", c.certFile, "err", err)
		return c.cert, nil
	}
	c.cert, c.stamp = &cert, stamp
	c.log.Info("tls certificate reloaded", "cert", c.certFile)
	return c.cert, nil
}
