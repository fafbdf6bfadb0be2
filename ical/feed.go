package ical

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	goical "github.com/emersion/go-ical"
)

// FeedObject is one calendar object resource cut out of a published feed:
// every component of one UID (the master and its overrides) with the
// VTIMEZONEs they use, written as a complete VCALENDAR.
type FeedObject struct {
	// UID is the feed's UID, or "calgate-" + hex SHA-256 of the normalised
	// content for a component the feed gave no UID.
	UID string
	// Name is the resource name derived from the UID: the first 32 hex
	// digits of SHA-256(UID) + ".ics". It is URL-safe and stable.
	Name string
	// Component is the component type: VEVENT, VTODO, ...
	Component string
	// Data is a VCALENDAR (VERSION:2.0, the feed's PRODID, no METHOD),
	// the VTIMEZONEs used and the components, CRLF, folded at 75 octets.
	// It passes Parse and Inspect.
	Data []byte
	// Start and End are the object's span as Inspect computes it.
	Start, End time.Time
	// Exact is Inspect's Info.Exact.
	Exact bool
	// Warnings are the repairs made to the object and what Inspect found.
	Warnings []string
	// Identity is FeedIdentity(Data): equal across fetches of a feed when
	// only DTSTAMP or LAST-MODIFIED changed.
	Identity string
}

// calgateProdID is written when the feed has no PRODID.
const calgateProdID = "-//calgate//calgate//EN"

// maxFeedWarnings caps the feed-level warnings SplitFeed returns (an HTML
// page or a huge broken feed would otherwise give one per line).
const maxFeedWarnings = 100

// SplitFeed reads a published iCalendar feed leniently and cuts it into
// calendar object resources, one per UID.
//
// It reads what a strict parser refuses: a UTF-8 byte order mark; CRLF or
// LF line ends; text that is not UTF-8 (bytes that are not part of a valid
// UTF-8 sequence are read as Windows-1252, a superset of Latin-1); content
// lines with no colon or a malformed name (skipped); names in any case;
// several VCALENDARs in one stream; a stream cut off inside a VCALENDAR
// (the complete components before the cut are kept). Inside components,
// values that cannot be read are dropped (a second DTSTART, an impossible
// DTEND, an empty EXDATE, an invalid RRULE, DURATION, GEO or FREEBUSY);
// a VEVENT whose DTSTART or RECURRENCE-ID cannot be read, or that has no
// DTSTART, is dropped. Components without UID get a stable one derived
// from their content. Of two components with the same UID and
// RECURRENCE-ID (or none), the one with the higher SEQUENCE, then the
// later LAST-MODIFIED, then the later in the feed, is kept. Every object
// is checked with Parse and Inspect; one that fails is dropped, never the
// feed. What was skipped, repaired or dropped is reported in the feed
// warnings (capped) or the object's Warnings.
//
// It fails with an error wrapping ErrInvalidData when data is not an
// iCalendar stream at all: empty, no VCALENDAR (an HTML error page, bare
// components), or BEGIN/END lines that do not pair up.
func (z *Zones) SplitFeed(data []byte) ([]FeedObject, []string, error) {
	r := &feedReader{z: z, tz: z.For(nil)}
	data = bytes.TrimPrefix(data, bom)
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, fmt.Errorf("%w: empty feed", ErrInvalidData)
	}
	cals, err := r.read(Unfold(data))
	if err != nil {
		return nil, r.warnings(), err
	}
	objs := r.split(cals)
	return objs, r.warnings(), nil
}

// FeedIdentity returns the lowercase hex SHA-256 of data with its DTSTAMP
// and LAST-MODIFIED lines left out: two versions of an object that differ
// only in those volatile properties have the same identity.
func FeedIdentity(data []byte) string {
	h := sha256.New()
	u := Unfold(data)
	for len(u) > 0 {
		var line []byte
		if i := bytes.IndexByte(u, '\n'); i >= 0 {
			line, u = u[:i], u[i+1:]
		} else {
			line, u = u, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || volatileLine(line) {
			continue
		}
		h.Write(line)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// volatileLine reports whether an unfolded content line is a DTSTAMP or
// LAST-MODIFIED property.
func volatileLine(line []byte) bool {
	for _, name := range [...]string{"DTSTAMP", "LAST-MODIFIED"} {
		if len(line) > len(name) && bytes.EqualFold(line[:len(name)], []byte(name)) &&
			(line[len(name)] == ':' || line[len(name)] == ';') {
			return true
		}
	}
	return false
}

// feedName returns the resource name of a UID.
func feedName(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(sum[:16]) + ".ics"
}

// fparam is one property parameter; value is as written (quotes kept).
type fparam struct{ name, value string }

// fprop is one content line of a feed.
type fprop struct {
	name   string // upper case
	params []fparam
	value  string
}

// fcomp is one component of a feed.
type fcomp struct {
	name  string // upper case
	line  int    // of its BEGIN
	props []fprop
	subs  []*fcomp
	warns []string // repairs, for the object's Warnings
}

// feedReader holds the state of one SplitFeed call.
type feedReader struct {
	z     *Zones
	tz    *TZ // resolves TZIDs while values are checked
	warns []string
	nwarn int
}

func (r *feedReader) warn(format string, args ...any) {
	r.nwarn++
	if len(r.warns) < maxFeedWarnings {
		r.warns = append(r.warns, fmt.Sprintf(format, args...))
	}
}

func (r *feedReader) warnings() []string {
	if r.nwarn > len(r.warns) {
		return append(r.warns, fmt.Sprintf("%d more warnings not shown", r.nwarn-len(r.warns)))
	}
	return r.warns
}

// read turns unfolded bytes into the feed's VCALENDARs.
func (r *feedReader) read(u []byte) ([]*fcomp, error) {
	var (
		cals     []*fcomp
		stack    []*fcomp
		lineNo   int
		recoded  int
		outside  int
		firstBad = -1
	)
	for len(u) > 0 {
		var raw []byte
		if i := bytes.IndexByte(u, '\n'); i >= 0 {
			raw, u = u[:i], u[i+1:]
		} else {
			raw, u = u, nil
		}
		lineNo++
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		if len(bytes.TrimSpace(raw)) == 0 {
			continue // blank lines are common between components
		}
		var line string
		if utf8.Valid(raw) {
			line = string(raw)
		} else {
			line = windows1252ToUTF8(raw)
			if recoded == 0 {
				firstBad = lineNo
			}
			recoded++
		}
		p, why := parseContentLine(line)
		if why != "" {
			if len(stack) > 0 {
				r.warn("line %d skipped: %s", lineNo, why)
			} else {
				outside++
			}
			continue
		}
		switch p.name {
		case "BEGIN":
			name := strings.ToUpper(p.value)
			if name == "" {
				return nil, fmt.Errorf("%w: line %d: BEGIN without a component name", ErrInvalidData, lineNo)
			}
			stack = append(stack, &fcomp{name: name, line: lineNo})
		case "END":
			name := strings.ToUpper(p.value)
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: line %d: END:%s without BEGIN", ErrInvalidData, lineNo, name)
			}
			top := stack[len(stack)-1]
			if top.name != name {
				return nil, fmt.Errorf("%w: line %d: END:%s closes BEGIN:%s (line %d)", ErrInvalidData, lineNo, name, top.name, top.line)
			}
			stack = stack[:len(stack)-1]
			switch {
			case len(stack) > 0:
				parent := stack[len(stack)-1]
				parent.subs = append(parent.subs, top)
			case name == "VCALENDAR":
				cals = append(cals, top)
			default:
				r.warn("line %d: %s outside any VCALENDAR skipped", top.line, name)
			}
		default:
			if len(stack) == 0 {
				outside++
				continue
			}
			top := stack[len(stack)-1]
			top.props = append(top.props, p)
		}
	}
	if len(stack) > 0 && stack[0].name == "VCALENDAR" {
		names := make([]string, len(stack))
		for i, c := range stack {
			names[i] = c.name
		}
		r.warn("truncated: the feed ends inside %s (BEGIN on line %d); the incomplete component is dropped",
			strings.Join(names, "/"), stack[len(stack)-1].line)
		cals = append(cals, stack[0])
	}
	if len(cals) == 0 {
		return nil, fmt.Errorf("%w: no VCALENDAR: not an iCalendar feed", ErrInvalidData)
	}
	if recoded > 0 {
		r.warn("text is not UTF-8: %d lines (the first is line %d) read as Windows-1252", recoded, firstBad)
	}
	if outside > 0 {
		r.warn("%d content lines outside any VCALENDAR ignored", outside)
	}
	return cals, nil
}

// parseContentLine splits an unfolded line into name, parameters and
// value. why is non-empty when the line cannot be read.
func parseContentLine(line string) (p fprop, why string) {
	i := strings.IndexAny(line, ";:")
	if i < 0 {
		return p, "no colon"
	}
	if !isToken(line[:i]) {
		return p, fmt.Sprintf("malformed name %q", truncate(line[:i], 40))
	}
	p.name = strings.ToUpper(line[:i])
	rest := line[i:]
	for rest[0] == ';' {
		rest = rest[1:]
		// One parameter, up to ';' or ':' outside double quotes.
		j, quoted := 0, false
		for ; j < len(rest); j++ {
			c := rest[j]
			if c == '"' {
				quoted = !quoted
			} else if !quoted && (c == ';' || c == ':') {
				break
			}
		}
		if j == len(rest) {
			return fprop{}, "no colon"
		}
		seg := rest[:j]
		rest = rest[j:]
		if k, v, ok := strings.Cut(seg, "="); ok && isToken(k) {
			p.params = append(p.params, fparam{name: strings.ToUpper(k), value: stripControl(v)})
		}
		// An empty or malformed parameter (";;", ";X") is dropped.
	}
	p.value = stripControl(rest[1:])
	if trimmedValue[p.name] {
		p.value = strings.TrimSpace(p.value)
	}
	return p, ""
}

// trimmedValue lists the properties whose values cannot carry meaningful
// white space; trailing spaces after them are common ("DTSTAMP:… ").
var trimmedValue = map[string]bool{
	"BEGIN": true, "END": true, "UID": true, "DTSTAMP": true, "DTSTART": true, "DTEND": true, "DUE": true,
	"DURATION": true, "RECURRENCE-ID": true, "EXDATE": true, "RDATE": true, "RRULE": true, "EXRULE": true,
	"CREATED": true, "LAST-MODIFIED": true, "COMPLETED": true, "SEQUENCE": true, "PRIORITY": true,
	"PERCENT-COMPLETE": true, "TZOFFSETFROM": true, "TZOFFSETTO": true, "TRIGGER": true, "STATUS": true,
	"CLASS": true, "TRANSP": true, "GEO": true, "FREEBUSY": true, "VERSION": true, "CALSCALE": true,
	"METHOD": true, "REPEAT": true,
}

// isToken reports whether s is an iana-token or x-name (RFC 5545 §3.1).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// stripControl removes the control characters RFC 5545 forbids in
// values (all but HTAB), which Parse would refuse.
func stripControl(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return -1
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// cp1252 maps the bytes 0x80–0x9F of Windows-1252; the five it leaves
// undefined become U+FFFD. Bytes 0xA0–0xFF are Latin-1 (U+00A0–U+00FF).
var cp1252 = [32]rune{
	'\u20ac', '\ufffd', '\u201a', '\u0192', '\u201e', '\u2026', '\u2020', '\u2021',
	'\u02c6', '\u2030', '\u0160', '\u2039', '\u0152', '\ufffd', '\u017d', '\ufffd',
	'\ufffd', '\u2018', '\u2019', '\u201c', '\u201d', '\u2022', '\u2013', '\u2014',
	'\u02dc', '\u2122', '\u0161', '\u203a', '\u0153', '\ufffd', '\u017e', '\u0178',
}

// windows1252ToUTF8 returns b as UTF-8: valid UTF-8 sequences are kept
// (a line may mix both), every other byte is read as Windows-1252.
func windows1252ToUTF8(b []byte) string {
	out := make([]byte, 0, len(b)+len(b)/4)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			out = append(out, b[:size]...)
			b = b[size:]
			continue
		}
		c := b[0]
		switch {
		case c < 0x80:
			out = append(out, c)
		case c < 0xa0:
			out = utf8.AppendRune(out, cp1252[c-0x80])
		default:
			out = utf8.AppendRune(out, rune(c))
		}
		b = b[1:]
	}
	return string(out)
}

// get returns the value of c's first property called name.
func (c *fcomp) get(name string) (string, bool) {
	for i := range c.props {
		if c.props[i].name == name {
			return c.props[i].value, true
		}
	}
	return "", false
}

// getProp returns c's first property called name, or nil.
func (c *fcomp) getProp(name string) *fprop {
	for i := range c.props {
		if c.props[i].name == name {
			return &c.props[i]
		}
	}
	return nil
}

// goProp returns p as a go-ical property with the parameters that date
// parsing reads (VALUE, TZID).
func (p *fprop) goProp(value string) *goical.Prop {
	gp := &goical.Prop{Name: p.name, Value: value}
	for _, pr := range p.params {
		if pr.name == goical.ParamTimezoneID || pr.name == goical.ParamValue {
			if gp.Params == nil {
				gp.Params = make(goical.Params)
			}
			gp.Params[pr.name] = []string{strings.Trim(pr.value, `"`)}
		}
	}
	return gp
}

// dropValueDate removes a VALUE=DATE parameter from a property whose value
// looks like a DATE-TIME, reporting whether it did.
func (p *fprop) dropValueDate() bool {
	if !strings.Contains(p.value, "T") {
		return false
	}
	for i, pr := range p.params {
		if pr.name == goical.ParamValue && strings.EqualFold(strings.Trim(pr.value, `"`), "DATE") {
			p.params = append(p.params[:i:i], p.params[i+1:]...)
			return true
		}
	}
	return false
}

// tzid returns p's TZID parameter, unquoted, or "".
func (p *fprop) tzid() string {
	for _, pr := range p.params {
		if pr.name == goical.ParamTimezoneID {
			return strings.Trim(pr.value, `"`)
		}
	}
	return ""
}

// singleProps may occur once in a component; a repeat is dropped.
var singleProps = map[string]bool{
	"UID": true, "DTSTAMP": true, "DTSTART": true, "DTEND": true, "DUE": true, "DURATION": true,
	"RECURRENCE-ID": true, "SEQUENCE": true, "CREATED": true, "LAST-MODIFIED": true, "COMPLETED": true,
	"GEO": true, "STATUS": true,
}

// dateProps hold one DATE or DATE-TIME value.
var dateProps = map[string]bool{
	"DTSTART": true, "DTEND": true, "DUE": true, "RECURRENCE-ID": true, "DTSTAMP": true,
	"CREATED": true, "LAST-MODIFIED": true, "COMPLETED": true,
}

// repair drops the properties of the top-level component c that cannot be
// read, noting each in c.warns. It returns a non-empty reason when c
// itself must be dropped.
func (r *feedReader) repair(c *fcomp) (drop string) {
	seen := make(map[string]bool, len(c.props))
	keep := c.props[:0]
	var start *Time
	for _, p := range c.props {
		if singleProps[p.name] {
			if seen[p.name] {
				c.warns = append(c.warns, fmt.Sprintf("second %s %q ignored", p.name, truncate(p.value, 40)))
				continue
			}
			seen[p.name] = true
		}
		switch {
		case dateProps[p.name]:
			t, _, err := r.tz.parseValue(p.goProp(p.value), p.value)
			if err != nil && p.dropValueDate() {
				// "DTSTART;VALUE=DATE:20110804T120000": read the DATE-TIME.
				if t, _, err = r.tz.parseValue(p.goProp(p.value), p.value); err == nil {
					c.warns = append(c.warns, fmt.Sprintf("%s %q has VALUE=DATE but is a DATE-TIME: read as a DATE-TIME", p.name, p.value))
				}
			}
			if err != nil {
				if p.name == "RECURRENCE-ID" || p.name == "DTSTART" && c.name == goical.CompEvent {
					return fmt.Sprintf("%s %q cannot be read", p.name, truncate(p.value, 40))
				}
				c.warns = append(c.warns, fmt.Sprintf("%s %q cannot be read: ignored", p.name, truncate(p.value, 40)))
				continue
			}
			if p.name == "DTSTART" {
				start = &t
			}
		case p.name == "EXDATE" || p.name == "RDATE" || p.name == "FREEBUSY":
			v, bad := r.dateList(&p)
			if bad != "" {
				c.warns = append(c.warns, fmt.Sprintf("%s values %s cannot be read: ignored", p.name, bad))
			}
			if v == "" {
				continue
			}
			p.value = v
		case p.name == "DURATION":
			if _, err := ParseDuration(p.value); err != nil {
				c.warns = append(c.warns, fmt.Sprintf("DURATION %q cannot be read: ignored", truncate(p.value, 40)))
				continue
			}
		case p.name == "GEO":
			v, ok := cleanGeo(p.value)
			if !ok {
				c.warns = append(c.warns, fmt.Sprintf("GEO %q is not latitude;longitude: ignored", truncate(p.value, 40)))
				continue
			}
			p.value = v
		}
		keep = append(keep, p)
	}
	c.props = keep
	// RRULEs are checked once DTSTART is known (UNTIL is read against it).
	ds := Time{Time: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), Floating: true}
	if start != nil {
		ds = *start
	}
	keep = c.props[:0]
	for _, p := range c.props {
		if p.name == "RRULE" {
			v := cleanRRule(p.value)
			if _, err := parseRuleText(v, ds, time.UTC); err != nil {
				c.warns = append(c.warns, fmt.Sprintf("RRULE %q ignored: %v", truncate(p.value, 60), err))
				continue
			}
			if v != p.value {
				c.warns = append(c.warns, fmt.Sprintf("RRULE %q read as %q", truncate(p.value, 60), truncate(v, 60)))
				p.value = v
			}
		}
		keep = append(keep, p)
	}
	c.props = keep
	if c.name == goical.CompEvent && start == nil {
		return "no DTSTART"
	}
	return ""
}

// dateList returns the values of an EXDATE, RDATE or FREEBUSY property
// that can be read, comma-separated, and the ones that cannot.
func (r *feedReader) dateList(p *fprop) (good, bad string) {
	var ok, ko []string
	for v := range strings.SplitSeq(p.value, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			ko = append(ko, `""`)
			continue
		}
		valid := true
		startText, endText, period := strings.Cut(v, "/")
		if _, _, err := r.tz.parseValue(p.goProp(startText), startText); err != nil {
			valid = false
		} else if period {
			if strings.ContainsAny(endText, "Pp") {
				_, err = ParseDuration(endText)
			} else {
				_, _, err = r.tz.parseValue(p.goProp(endText), endText)
			}
			valid = err == nil
		} else if p.name == "FREEBUSY" {
			valid = false // FREEBUSY values are periods
		}
		if valid {
			ok = append(ok, v)
		} else {
			ko = append(ko, strconv.Quote(truncate(v, 40)))
		}
	}
	return strings.Join(ok, ","), strings.Join(ko, ", ")
}

// cleanGeo returns a GEO value as "lat;lon", accepting an escaped
// semicolon, and whether it is valid.
func cleanGeo(v string) (string, bool) {
	v = strings.ReplaceAll(v, `\;`, ";")
	a, b, ok := strings.Cut(v, ";")
	if !ok {
		return "", false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	lat, err1 := strconv.ParseFloat(a, 64)
	lon, err2 := strconv.ParseFloat(b, 64)
	if err1 != nil || err2 != nil || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return "", false
	}
	return a + ";" + b, true
}

// cleanRRule removes a repeated "RRULE:" prefix and parts without "="
// ("RRULE:RRULE:AnythingRandom;FREQ=WEEKLY" is in the wild).
func cleanRRule(v string) string {
	for len(v) >= 6 && strings.EqualFold(v[:6], "RRULE:") {
		v = v[6:]
	}
	if !strings.Contains(v, ";") && strings.Contains(v, "=") {
		return v
	}
	parts := strings.Split(v, ";")
	keep := parts[:0]
	for _, part := range parts {
		if strings.Contains(part, "=") {
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, ";")
}

// fgroup is every component of one UID.
type fgroup struct {
	uid       string
	cal       *fcomp   // the VCALENDAR of the first component
	master    *fcomp   // nil if the feed has only overrides
	overrides []*fcomp // one per RECURRENCE-ID, in feed order
	rids      map[string]int
	warns     []string
}

// newer reports whether a should replace b: a higher SEQUENCE, then a
// later LAST-MODIFIED; on a tie the later one in the feed (a) wins.
func newer(a, b *fcomp) bool {
	sa, sb := seqOf(a), seqOf(b)
	if sa != sb {
		return sa > sb
	}
	la, _ := a.get("LAST-MODIFIED")
	lb, _ := b.get("LAST-MODIFIED")
	return la >= lb // UTC DATE-TIMEs compare as strings
}

func seqOf(c *fcomp) int {
	v, _ := c.get("SEQUENCE")
	n, _ := strconv.Atoi(v)
	return n
}

// split groups the components of cals by UID and writes the objects.
func (r *feedReader) split(cals []*fcomp) []FeedObject {
	var (
		groups  = make(map[string]*fgroup)
		order   []*fgroup
		hashes  = make(map[string]int) // synthesised UIDs, to tell identical components apart
		calTZ   = make(map[*fcomp]map[string]*fcomp)
		allTZ   = make(map[string]*fcomp)
		dropped int
	)
	for _, cal := range cals {
		own := make(map[string]*fcomp)
		calTZ[cal] = own
		for _, c := range cal.subs {
			if c.name != goical.CompTimezone {
				continue
			}
			id, ok := c.get("TZID")
			if !ok || id == "" {
				continue
			}
			if _, dup := own[id]; !dup {
				own[id] = c
			}
			if _, dup := allTZ[id]; !dup {
				allTZ[id] = c
			}
		}
	}
	for _, cal := range cals {
		for _, c := range cal.subs {
			if c.name == goical.CompTimezone || strings.HasPrefix(c.name, "X-") {
				continue
			}
			if why := r.repair(c); why != "" {
				uid, _ := c.get("UID")
				r.warn("line %d: %s %q dropped: %s", c.line, c.name, uid, why)
				dropped++
				continue
			}
			uid, _ := c.get("UID")
			if uid == "" {
				uid = "calgate-" + contentHash(c)
				if n := hashes[uid]; n > 0 {
					hashes[uid] = n + 1
					uid += "-" + strconv.Itoa(n+1)
				} else {
					hashes[uid] = 1
				}
				if p := c.getProp("UID"); p != nil {
					p.value = uid
				} else {
					c.props = append([]fprop{{name: "UID", value: uid}}, c.props...)
				}
				c.warns = append(c.warns, "the feed gives no UID: "+uid+" is derived from the content")
			}
			g := groups[uid]
			if g == nil {
				g = &fgroup{uid: uid, cal: cal, rids: make(map[string]int)}
				groups[uid] = g
				order = append(order, g)
			}
			rp := c.getProp("RECURRENCE-ID")
			if rp == nil {
				if g.master != nil {
					kept := g.master
					if newer(c, g.master) {
						g.master = c
						kept = c
					}
					g.warns = append(g.warns, fmt.Sprintf("%s %q appears more than once without RECURRENCE-ID: kept SEQUENCE %d (line %d)",
						c.name, uid, seqOf(kept), kept.line))
					continue
				}
				g.master = c
				continue
			}
			key := rp.value
			if t, _, err := r.tz.parseValue(rp.goProp(rp.value), rp.value); err == nil {
				key = ridKey(t)
			}
			if i, dup := g.rids[key]; dup {
				if newer(c, g.overrides[i]) {
					g.overrides[i] = c
				}
				g.warns = append(g.warns, fmt.Sprintf("two overrides with RECURRENCE-ID %s: kept SEQUENCE %d (line %d)",
					rp.value, seqOf(g.overrides[i]), g.overrides[i].line))
				continue
			}
			g.rids[key] = len(g.overrides)
			g.overrides = append(g.overrides, c)
		}
	}
	objs := make([]FeedObject, 0, len(order))
	var buf []byte
	for _, g := range order {
		comps := g.overrides
		if g.master != nil {
			comps = append([]*fcomp{g.master}, g.overrides...)
		}
		buf = r.write(buf[:0], g.cal, comps, calTZ[g.cal], allTZ)
		data := bytes.Clone(buf)
		cal, err := Parse(data)
		if err != nil {
			r.warn("line %d: UID %q dropped: %v", comps[0].line, g.uid, err)
			dropped++
			continue
		}
		info, err := r.z.Inspect(cal)
		if err != nil {
			r.warn("line %d: UID %q dropped: %v", comps[0].line, g.uid, err)
			dropped++
			continue
		}
		warns := g.warns
		for _, c := range comps {
			warns = appendNew(warns, c.warns...)
		}
		warns = appendNew(warns, info.Warnings...)
		objs = append(objs, FeedObject{
			UID:       g.uid,
			Name:      feedName(g.uid),
			Component: info.Component,
			Data:      data,
			Start:     info.Start,
			End:       info.End,
			Exact:     info.Exact,
			Warnings:  warns,
			Identity:  FeedIdentity(data),
		})
	}
	if dropped > 0 {
		r.warn("%d components or objects dropped; %d objects kept", dropped, len(objs))
	}
	return objs
}

// contentHash returns the hex SHA-256 of c's content lines, without the
// volatile DTSTAMP and LAST-MODIFIED, so that a feed that stamps every
// fetch still gives the same UID.
func contentHash(c *fcomp) string {
	h := sha256.New()
	var walk func(c *fcomp)
	walk = func(c *fcomp) {
		h.Write([]byte("BEGIN:" + c.name + "\n"))
		for i := range c.props {
			p := &c.props[i]
			if p.name == "DTSTAMP" || p.name == "LAST-MODIFIED" {
				continue
			}
			h.Write(appendLine(nil, p))
			h.Write([]byte{'\n'})
		}
		for _, s := range c.subs {
			walk(s)
		}
		h.Write([]byte("END:" + c.name + "\n"))
	}
	walk(c)
	return hex.EncodeToString(h.Sum(nil))
}

// appendLine appends p as an unfolded content line.
func appendLine(b []byte, p *fprop) []byte {
	b = append(b, p.name...)
	for _, pr := range p.params {
		b = append(b, ';')
		b = append(b, pr.name...)
		b = append(b, '=')
		b = append(b, pr.value...)
	}
	b = append(b, ':')
	return append(b, p.value...)
}

// write appends the VCALENDAR of one object to b.
func (r *feedReader) write(b []byte, cal *fcomp, comps []*fcomp, own, all map[string]*fcomp) []byte {
	prodID, _ := cal.get("PRODID")
	if prodID == "" {
		prodID = calgateProdID
	}
	b = append(b, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"...)
	b = FoldLine(b, "PRODID:"+prodID)
	var tzids []string
	seen := make(map[string]bool)
	var collect func(c *fcomp)
	collect = func(c *fcomp) {
		for i := range c.props {
			if id := c.props[i].tzid(); id != "" && !seen[id] {
				seen[id] = true
				tzids = append(tzids, id)
			}
		}
		for _, s := range c.subs {
			collect(s)
		}
	}
	for _, c := range comps {
		collect(c)
	}
	written := make(map[*fcomp]bool)
	for _, id := range tzids {
		vtz := own[id]
		if vtz == nil {
			vtz = all[id]
		}
		if vtz == nil {
			norm := normTZID(id)
			for k, v := range own {
				if strings.EqualFold(normTZID(k), norm) {
					vtz = v
					break
				}
			}
		}
		if vtz != nil && !written[vtz] {
			written[vtz] = true
			b = writeComp(b, vtz)
		}
	}
	for _, c := range comps {
		b = writeComp(b, c)
	}
	return append(b, "END:VCALENDAR\r\n"...)
}

// writeComp appends c as folded, CRLF-ended content lines.
func writeComp(b []byte, c *fcomp) []byte {
	b = append(b, "BEGIN:"+c.name+"\r\n"...)
	var line []byte
	for i := range c.props {
		line = appendLine(line[:0], &c.props[i])
		b = FoldLine(b, string(line))
	}
	for _, s := range c.subs {
		b = writeComp(b, s)
	}
	return append(b, "END:"+c.name+"\r\n"...)
}
