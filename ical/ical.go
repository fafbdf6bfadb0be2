// Package ical holds the iCalendar (RFC 5545) logic that both sides of
// calgate need: decoding behind recover, validation of calendar object
// resources (RFC 4791 §4.1), date-time values with time-zone resolution,
// and the time-range rules of RFC 4791 §9.9.
//
// calgate stores and serves the bytes it received; this package only reads
// them. Nothing here re-encodes an object.
package ical

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	goical "github.com/emersion/go-ical"
)

// Sentinel errors of Parse and Inspect. Both are wrapped with detail.
var (
	// ErrInvalidData means the bytes are not a well-formed iCalendar
	// stream (CALDAV:valid-calendar-data).
	ErrInvalidData = errors.New("ical: invalid calendar data")
	// ErrInvalidObject means the data is iCalendar but breaks the rules of
	// a calendar object resource (CALDAV:valid-calendar-object-resource).
	ErrInvalidObject = errors.New("ical: invalid calendar object resource")
)

var bom = []byte("\xef\xbb\xbf")

// Parse decodes data as exactly one VCALENDAR. A leading UTF-8 byte order
// mark is skipped. Text must be UTF-8 once folded lines are joined (a
// multi-octet sequence may be split by a fold). The go-ical decoder can
// panic on malformed input; Parse turns that into ErrInvalidData.
func Parse(data []byte) (cal *goical.Calendar, err error) {
	defer func() {
		if r := recover(); r != nil {
			cal, err = nil, fmt.Errorf("%w: %v", ErrInvalidData, r)
		}
	}()
	data = bytes.TrimPrefix(data, bom)
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrInvalidData)
	}
	unfolded := Unfold(data)
	if !utf8.Valid(unfolded) {
		return nil, fmt.Errorf("%w: text is not UTF-8", ErrInvalidData)
	}
	if i := bytes.IndexFunc(data, func(r rune) bool { return r < 0x20 && r != '\r' && r != '\n' && r != '\t' }); i >= 0 {
		return nil, fmt.Errorf("%w: control character 0x%02x at byte %d", ErrInvalidData, data[i], i)
	}
	if tooDeep(unfolded) {
		return nil, fmt.Errorf("%w: components nested more than %d deep", ErrInvalidData, maxDepth)
	}
	dec := goical.NewDecoder(bytes.NewReader(data))
	cal, err = dec.Decode()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated (missing END lines)", ErrInvalidData)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidData, err)
	}
	if _, err := dec.Decode(); err == nil {
		return nil, fmt.Errorf("%w: more than one VCALENDAR", ErrInvalidObject)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after END:VCALENDAR", ErrInvalidData)
	}
	return cal, nil
}

// maxDepth caps the nesting of components (VCALENDAR > VEVENT > VALARM
// is 3). The go-ical decoder recurses once per level, so a body of
// nothing but BEGIN lines would otherwise grow the stack with its size.
const maxDepth = 16

// tooDeep reports whether the BEGIN lines of unfolded data nest deeper
// than maxDepth.
func tooDeep(unfolded []byte) bool {
	depth := 0
	for line := range bytes.Lines(unfolded) {
		switch {
		case contentName(line, "BEGIN"):
			if depth++; depth > maxDepth {
				return true
			}
		case contentName(line, "END"):
			depth--
		}
	}
	return false
}

// contentName reports whether line is a content line named name (in any
// case), followed by its parameters or value.
func contentName(line []byte, name string) bool {
	return len(line) > len(name) && bytes.EqualFold(line[:len(name)], []byte(name)) &&
		(line[len(name)] == ':' || line[len(name)] == ';')
}

// Unfold joins folded content lines (RFC 5545 §3.1): every CRLF or LF
// followed by one SPACE or HTAB is removed. It works on bytes, before any
// decoding, so a UTF-8 sequence split by a fold is joined again.
func Unfold(data []byte) []byte {
	if !bytes.Contains(data, []byte("\n ")) && !bytes.Contains(data, []byte("\n\t")) {
		return data
	}
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '\r' && i+2 < len(data) && data[i+1] == '\n' && (data[i+2] == ' ' || data[i+2] == '\t') {
			i += 2
			continue
		}
		if c == '\n' && i+1 < len(data) && (data[i+1] == ' ' || data[i+1] == '\t') {
			i++
			continue
		}
		out = append(out, c)
	}
	return out
}
