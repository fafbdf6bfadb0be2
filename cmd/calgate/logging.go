package main

import (
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Log formats of -log-format.
const (
	logFormatText = "text"
	logFormatJSON = "json"
)

// parseLevel turns a -log-level value into a slog level.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
}

// parseFormat checks a -log-format value.
func parseFormat(s string) (string, error) {
	switch f := strings.ToLower(s); f {
	case logFormatText, logFormatJSON:
		return f, nil
	}
	return "", fmt.Errorf("-log-format %q: want text or json", s)
}

// newLogger is the logger every subcommand writes to stderr: text
// (key=value) or JSON lines, one per record, at level and above. It
// redacts secrets that would otherwise reach a log by accident (see
// redactAttr).
func newLogger(stderr io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}
	if format == logFormatJSON {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// secretKeys are attribute keys whose values are never logged.
var secretKeys = map[string]bool{
	"password": true, "password_hash": true, "passwd": true, "authorization": true,
	"token": true, "tokens": true, "secret": true, "cookie": true,
}

// urlCredentials matches the password of a URL's user information
// (scheme://user:password@host).
var urlCredentials = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^/?#@\s:"']*):[^/?#@\s"']*@`)

// redactAttr is the loggers' ReplaceAttr. Calgate's packages log no
// secrets; this is the second line of defence: the value of a secret key
// (password, token, authorization, ...) is replaced, and so is the
// password of any URL in a string or error value.
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if secretKeys[strings.ToLower(a.Key)] {
		return slog.String(a.Key, "[redacted]")
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "@") {
			a.Value = slog.StringValue(redactURLs(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			if s := err.Error(); strings.Contains(s, "@") {
				if r := redactURLs(s); r != s {
					a.Value = slog.StringValue(r)
				}
			}
		}
	}
	return a
}

// redactURLs replaces the password of every URL in s with "xxxxx", as
// net/url's URL.Redacted does.
func redactURLs(s string) string {
	return urlCredentials.ReplaceAllString(s, "${1}:xxxxx@")
}
