package ical

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	goical "github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

//go:generate go run ./internal/genwindowszones

// Limits of time-zone resolution. They bound the memory a Zones can hold
// and the work one hostile VTIMEZONE can cause.
const (
	maxCached       = 10000 // TZIDs and VTIMEZONEs remembered per Zones
	maxTZIDLen      = 256   // longer TZIDs are unknown
	vtzLastYear     = 2100  // VTIMEZONE transitions are generated up to this year
	vtzShiftYear    = 1900  // open yearly rules starting earlier are started here
	maxOnsets       = 3000  // onsets read from one observance
	maxVTZOnsets    = 20000 // onsets read from one VTIMEZONE
	maxVTZZoneTypes = 255   // distinct (offset, DST, name) triples in one VTIMEZONE
)

// displayName is a Windows time-zone display name and its Windows id.
type displayName struct{ name, id string }

// outlookDisplayNames are display names that Outlook, OWA and Exchange put
// into TZIDs and that CLDR does not list: the "(UTC±hh:mm) cities" text of
// the most used Windows zones (kept here even where windowszones.go has it
// too, so that the generated comments are a bonus, not a dependency), the
// older "(GMT±hh:mm)" texts, and other spellings seen in the wild. They are
// matched after normalisation (see normDisplay), with or without the
// offset prefix.
var outlookDisplayNames = [...]displayName{
	{"(UTC-10:00) Hawaii", "Hawaiian Standard Time"},
	{"(UTC-09:00) Alaska", "Alaskan Standard Time"},
	{"(UTC-08:00) Pacific Time (US & Canada)", "Pacific Standard Time"},
	{"(UTC-08:00) Pacific Time (US & Canada); Tijuana", "Pacific Standard Time"},
	{"(UTC-07:00) Arizona", "US Mountain Standard Time"},
	{"(UTC-07:00) Mountain Time (US & Canada)", "Mountain Standard Time"},
	{"(UTC-06:00) Central Time (US & Canada)", "Central Standard Time"},
	{"(UTC-06:00) Guadalajara, Mexico City, Monterrey", "Central Standard Time (Mexico)"},
	{"(UTC-06:00) Saskatchewan", "Canada Central Standard Time"},
	{"(UTC-05:00) Eastern Time (US & Canada)", "Eastern Standard Time"},
	{"(UTC-05:00) Bogota, Lima, Quito, Rio Branco", "SA Pacific Standard Time"},
	{"(UTC-05:00) Bogota, Lima, Quito", "SA Pacific Standard Time"},
	{"(UTC-05:00) Indiana (East)", "US Eastern Standard Time"},
	{"(UTC-04:00) Atlantic Time (Canada)", "Atlantic Standard Time"},
	{"(UTC-04:00) Santiago", "Pacific SA Standard Time"},
	{"(UTC-04:00) Caracas", "Venezuela Standard Time"},
	{"(UTC-03:30) Newfoundland", "Newfoundland Standard Time"},
	{"(UTC-03:00) Brasilia", "E. South America Standard Time"},
	{"(UTC-03:00) City of Buenos Aires", "Argentina Standard Time"},
	{"(UTC-03:00) Buenos Aires", "Argentina Standard Time"},
	{"(UTC) Coordinated Universal Time", "UTC"},
	{"(UTC+00:00) Dublin, Edinburgh, Lisbon, London", "GMT Standard Time"},
	{"(UTC) Dublin, Edinburgh, Lisbon, London", "GMT Standard Time"},
	{"(GMT) Greenwich Mean Time : Dublin, Edinburgh, Lisbon, London", "GMT Standard Time"},
	{"(GMT) Greenwich Mean Time: Dublin, Edinburgh, Lisbon, London", "GMT Standard Time"},
	{"(UTC+00:00) Monrovia, Reykjavik", "Greenwich Standard Time"},
	{"(GMT) Casablanca, Monrovia", "Greenwich Standard Time"},
	{"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna", "W. Europe Standard Time"},
	{"Amsterdam, Belgrade, Berlin, Brussels, Budapest, Madrid, Paris, Prague, Stockholm", "W. Europe Standard Time"},
	{"(UTC+01:00) Belgrade, Bratislava, Budapest, Ljubljana, Prague", "Central Europe Standard Time"},
	{"(UTC+01:00) Brussels, Copenhagen, Madrid, Paris", "Romance Standard Time"},
	{"(UTC+01:00) Sarajevo, Skopje, Warsaw, Zagreb", "Central European Standard Time"},
	{"(UTC+01:00) West Central Africa", "W. Central Africa Standard Time"},
	{"(UTC+02:00) Athens, Bucharest", "GTB Standard Time"},
	{"(UTC+02:00) Athens, Bucharest, Istanbul", "GTB Standard Time"},
	{"(UTC+02:00) Cairo", "Egypt Standard Time"},
	{"(UTC+02:00) Harare, Pretoria", "South Africa Standard Time"},
	{"(UTC+02:00) Helsinki, Kyiv, Riga, Sofia, Tallinn, Vilnius", "FLE Standard Time"},
	{"(UTC+02:00) Helsinki, Kiev, Riga, Sofia, Tallinn, Vilnius", "FLE Standard Time"},
	{"(UTC+02:00) Jerusalem", "Israel Standard Time"},
	{"(UTC+03:00) Istanbul", "Turkey Standard Time"},
	{"(UTC+03:00) Kuwait, Riyadh", "Arab Standard Time"},
	{"(UTC+03:00) Moscow, St. Petersburg", "Russian Standard Time"},
	{"(UTC+03:00) Moscow, St. Petersburg, Volgograd", "Russian Standard Time"},
	{"(UTC+03:00) Nairobi", "E. Africa Standard Time"},
	{"(UTC+03:30) Tehran", "Iran Standard Time"},
	{"(UTC+04:00) Abu Dhabi, Muscat", "Arabian Standard Time"},
	{"(UTC+05:00) Islamabad, Karachi", "Pakistan Standard Time"},
	{"(UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi", "India Standard Time"},
	{"(UTC+05:45) Kathmandu", "Nepal Standard Time"},
	{"(UTC+06:00) Dhaka", "Bangladesh Standard Time"},
	{"(UTC+07:00) Bangkok, Hanoi, Jakarta", "SE Asia Standard Time"},
	{"(UTC+08:00) Beijing, Chongqing, Hong Kong, Urumqi", "China Standard Time"},
	{"(UTC+08:00) Kuala Lumpur, Singapore", "Singapore Standard Time"},
	{"(UTC+08:00) Perth", "W. Australia Standard Time"},
	{"(UTC+08:00) Taipei", "Taipei Standard Time"},
	{"(UTC+09:00) Osaka, Sapporo, Tokyo", "Tokyo Standard Time"},
	{"(UTC+09:00) Seoul", "Korea Standard Time"},
	{"(UTC+09:30) Adelaide", "Cen. Australia Standard Time"},
	{"(UTC+10:00) Brisbane", "E. Australia Standard Time"},
	{"(UTC+10:00) Canberra, Melbourne, Sydney", "AUS Eastern Standard Time"},
	{"(UTC+10:00) Hobart", "Tasmania Standard Time"},
	{"(UTC+12:00) Auckland, Wellington", "New Zealand Standard Time"},
}

// zoneEntry is what a TZID resolves to without the object's VTIMEZONEs.
type zoneEntry struct {
	loc *time.Location // nil: unknown
	// fuzzy: loc was found through a display name, so a VTIMEZONE of the
	// object with this TZID is trusted more (see TZ.Location).
	fuzzy bool
}

// lookup resolves a normalised TZID by name (IANA, vendor prefix, Windows
// id, display name) and remembers the answer.
func (z *Zones) lookup(name string) zoneEntry {
	if v, ok := z.names.Load(name); ok {
		return v.(zoneEntry)
	}
	e := resolveName(name)
	if z.nnames.Load() < maxCached {
		if _, loaded := z.names.LoadOrStore(name, e); !loaded {
			z.nnames.Add(1)
		}
	}
	return e
}

// UnescapeText undoes the escapes of an iCalendar TEXT value (RFC 5545
// §3.3.11).
func UnescapeText(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			switch s[i] {
			case 'n', 'N':
				b.WriteByte('\n')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// normTZID strips the surrounding whitespace and quotes of a TZID.
func normTZID(s string) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(s), `"`))
}

func resolveName(name string) zoneEntry {
	if name == "" || len(name) > maxTZIDLen || !utf8.ValidString(name) {
		return zoneEntry{}
	}
	if loc := loadIANA(name); loc != nil {
		return zoneEntry{loc: loc}
	}
	if loc := loadWindows(name); loc != nil {
		return zoneEntry{loc: loc}
	}
	for _, c := range prefixCandidates(name) {
		if loc := loadIANA(c); loc != nil {
			return zoneEntry{loc: loc}
		}
		if loc := loadWindows(c); loc != nil {
			return zoneEntry{loc: loc}
		}
	}
	if loc := loadDisplay(name); loc != nil {
		return zoneEntry{loc: loc, fuzzy: true}
	}
	return zoneEntry{}
}

// loadIANA loads an IANA zone, ignoring the case of name. A name Go's
// tzdata does not list is tried as is only if it looks like Area/City, so
// that system files such as "localtime" or "posix/..." are never read.
func loadIANA(name string) *time.Location {
	canon, ok := ianaNames[strings.ToLower(name)]
	if !ok {
		if !plausibleIANA(name) {
			return nil
		}
		canon = name
	}
	loc, err := time.LoadLocation(canon)
	if err != nil {
		return nil
	}
	return loc
}

func plausibleIANA(name string) bool {
	if !strings.Contains(name, "/") || strings.Contains(name, "..") || name[0] == '/' {
		return false
	}
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "posix/") || strings.HasPrefix(lower, "right/") {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_+-", r)) {
			return false
		}
	}
	return true
}

// loadWindows resolves a Windows time-zone id ("W. Europe Standard Time")
// through CLDR, ignoring case. The "Daylight Time" spelling that some
// clients send is read as the zone's "Standard Time" id.
func loadWindows(name string) *time.Location {
	iana, ok := windowsZones[name]
	if !ok {
		id := name
		if s, cut := cutSuffixFold(id, " Daylight Time"); cut {
			id = s + " Standard Time"
		}
		for k, v := range windowsZones {
			if strings.EqualFold(k, id) {
				iana, ok = v, true
				break
			}
		}
	}
	if !ok {
		return nil
	}
	return loadIANA(iana)
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// prefixCandidates returns the names to try for a TZID with a vendor
// prefix, longest first: "/mozilla.org/20050126_1/Europe/Berlin" gives
// "20050126_1/Europe/Berlin", "Europe/Berlin" and "Berlin". It handles a
// leading "/" (Mozilla, softwarestudio.org, citadel.org, freeassociation),
// "tzone://Microsoft/" and the "posix/" and "right/" trees of zoneinfo.
func prefixCandidates(name string) []string {
	var rest string
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(lower, "tzone://"):
		rest = name[len("tzone://"):]
	case strings.HasPrefix(name, "/"):
		rest = name
	case strings.HasPrefix(lower, "posix/"), strings.HasPrefix(lower, "right/"):
		rest = name[len("posix/"):]
	default:
		return nil
	}
	var segs []string
	for _, s := range strings.Split(rest, "/") {
		if s = strings.TrimSpace(s); s != "" {
			segs = append(segs, s)
		}
	}
	var out []string
	for i := range segs {
		out = append(out, strings.Join(segs[i:], "/"))
	}
	return out
}

// loadDisplay resolves an Outlook or Windows display name: first the
// whole normalised name, then the part after "(UTC±hh:mm)" alone. The
// offset in a display name is the zone's standard offset, not the one in
// force, so it is never used as an offset.
func loadDisplay(name string) *time.Location {
	n := normDisplay(name)
	if n == "" {
		return nil
	}
	cities := displayCities(n)
	for pass := 0; pass < 2; pass++ {
		for _, list := range [][]displayName{outlookDisplayNames[:], windowsDisplayNames[:]} {
			for _, d := range list {
				dn := normDisplay(d.name)
				if pass == 0 && dn == n || pass == 1 && cities != "" && displayCities(dn) == cities {
					if loc := loadWindows(d.id); loc != nil {
						return loc
					}
				}
			}
		}
	}
	return nil
}

// accents folds the accented letters that occur in Windows display names.
var accents = strings.NewReplacer("á", "a", "à", "a", "â", "a", "ã", "a", "ä", "a", "é", "e", "è", "e", "ê", "e",
	"í", "i", "ó", "o", "ô", "o", "õ", "o", "ö", "o", "ú", "u", "ü", "u", "ç", "c", "ñ", "n")

// normDisplay lower-cases a display name, folds accents, removes iCalendar
// escapes, reads "(GMT" as "(UTC", "(UTC)" as "(UTC+00:00)" and "&" as
// "and", and collapses white space.
func normDisplay(s string) string {
	s = accents.Replace(strings.ToLower(s))
	s = strings.ReplaceAll(s, `\`, "")
	s = strings.ReplaceAll(s, "&", " and ")
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, " ,", ",")
	s = strings.ReplaceAll(s, " :", ":")
	if strings.HasPrefix(s, "(gmt") {
		s = "(utc" + s[len("(gmt"):]
	}
	if strings.HasPrefix(s, "(utc)") {
		s = "(utc+00:00)" + s[len("(utc)"):]
	}
	return s
}

// displayCities returns a normalised display name without its
// "(utc±hh:mm)" prefix.
func displayCities(n string) string {
	if strings.HasPrefix(n, "(utc") {
		if i := strings.IndexByte(n, ')'); i >= 0 {
			return strings.TrimSpace(n[i+1:])
		}
	}
	return n
}

// ownComponent returns the object's VTIMEZONE with TZID name, matching
// case-insensitively if no TZID matches exactly.
func (tz *TZ) ownComponent(name string) *goical.Component {
	if c, ok := tz.own[name]; ok {
		return c
	}
	for k, c := range tz.own {
		if strings.EqualFold(k, name) {
			return c
		}
	}
	return nil
}

// ownLocation evaluates the object's VTIMEZONE c (TZID name), remembering
// the answer in tz; nil means it cannot be evaluated.
func (tz *TZ) ownLocation(name string, c *goical.Component) *time.Location {
	tz.mu.Lock()
	defer tz.mu.Unlock()
	if loc, ok := tz.locs[name]; ok {
		return loc
	}
	loc := tz.z.vtimezone(name, c)
	if tz.locs == nil {
		tz.locs = make(map[string]*time.Location)
	}
	tz.locs[name] = loc
	return loc
}

// vtimezone evaluates VTIMEZONE c as a location named name, remembering
// the answer by a hash of c's content; nil means it cannot be evaluated.
func (z *Zones) vtimezone(name string, c *goical.Component) *time.Location {
	key := vtzKey(name, c)
	if v, ok := z.vtz.Load(key); ok {
		loc, _ := v.(*time.Location)
		return loc
	}
	loc, err := LoadVTimezone(name, c)
	if err != nil {
		loc = nil
	}
	if z.nvtz.Load() < maxCached {
		if _, loaded := z.vtz.LoadOrStore(key, loc); !loaded {
			z.nvtz.Add(1)
		}
	}
	return loc
}

// vtzKey hashes name and the content of c (properties sorted by name, so
// the key does not depend on map order).
func vtzKey(name string, c *goical.Component) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	str := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	str(name)
	var walk func(c *goical.Component)
	walk = func(c *goical.Component) {
		str("BEGIN:" + c.Name)
		names := make([]string, 0, len(c.Props))
		for k := range c.Props {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, p := range c.Props[k] {
				str(p.Name)
				pnames := make([]string, 0, len(p.Params))
				for pk := range p.Params {
					pnames = append(pnames, pk)
				}
				sort.Strings(pnames)
				for _, pk := range pnames {
					str(pk)
					for _, v := range p.Params[pk] {
						str(v)
					}
				}
				str(p.Value)
			}
		}
		for _, child := range c.Children {
			walk(child)
		}
		str("END:" + c.Name)
	}
	walk(c)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// errVTimezone is wrapped by the errors of LoadVTimezone.
var errVTimezone = fmt.Errorf("%w: VTIMEZONE cannot be evaluated", ErrInvalidData)

// LoadVTimezone turns VTIMEZONE component c into a location named name.
// Its STANDARD and DAYLIGHT observances (DTSTART, TZOFFSETFROM,
// TZOFFSETTO, TZNAME, yearly or monthly RRULEs and RDATEs) give the
// transitions from the earliest onset up to the year 2100; before the
// earliest onset the TZOFFSETFROM of that onset applies, and after the last
// one its offset stays. An observance whose offset cannot be read is
// skipped. The error, when c has no usable observance, wraps
// ErrInvalidData.
//
// LoadVTimezone does no caching; TZ.Location does.
func LoadVTimezone(name string, c *goical.Component) (*time.Location, error) {
	if c == nil || c.Name != goical.CompTimezone {
		return nil, fmt.Errorf("%w: not a VTIMEZONE", errVTimezone)
	}
	var ons []onset
	for _, sub := range c.Children {
		if sub.Name != goical.CompTimezoneStandard && sub.Name != goical.CompTimezoneDaylight {
			continue
		}
		got, err := observanceOnsets(sub, maxVTZOnsets-len(ons))
		if err != nil {
			continue // one bad observance does not spoil the rest
		}
		ons = append(ons, got...)
		if len(ons) >= maxVTZOnsets {
			return nil, fmt.Errorf("%w: %s: more than %d transitions", errVTimezone, name, maxVTZOnsets)
		}
	}
	if len(ons) == 0 {
		return nil, fmt.Errorf("%w: %s: no usable STANDARD or DAYLIGHT observance", errVTimezone, name)
	}
	// Equal instants keep document order, so the later observance wins.
	sort.SliceStable(ons, func(i, j int) bool { return ons[i].at < ons[j].at })

	first := zoneType{off: ons[0].from}
	for _, o := range ons { // name the initial offset after an observance that has it
		if o.off == first.off {
			first.dst, first.abbr = o.dst, o.abbr
			break
		}
	}
	var trans []transition
	state := first
	for i, o := range ons {
		if i+1 < len(ons) && ons[i+1].at == o.at {
			continue
		}
		zt := zoneType{off: o.off, dst: o.dst, abbr: o.abbr}
		if zt == state {
			continue
		}
		trans = append(trans, transition{at: o.at, zt: zt})
		state = zt
	}
	data, err := tzif(first, trans)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errVTimezone, name, err)
	}
	loc, err := time.LoadLocationFromTZData(name, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errVTimezone, name, err)
	}
	return loc, nil
}

// onset is one start of an observance.
type onset struct {
	at        int64 // Unix seconds
	from, off int   // UTC offsets in seconds before and after
	dst       bool
	abbr      string
}

type zoneType struct {
	off  int
	dst  bool
	abbr string
}

type transition struct {
	at int64
	zt zoneType
}

// observanceOnsets lists the onsets of one STANDARD or DAYLIGHT component,
// at most limit of them.
func observanceOnsets(sub *goical.Component, limit int) ([]onset, error) {
	to, ok := parseOffset(obsValue(sub, goical.PropTimezoneOffsetTo))
	if !ok {
		return nil, errors.New("bad or missing TZOFFSETTO")
	}
	from, ok := parseOffset(obsValue(sub, goical.PropTimezoneOffsetFrom))
	if !ok {
		from = to // lenient: "+5328" and the like
	}
	dtstart := sub.Props.Get(goical.PropDateTimeStart)
	if dtstart == nil {
		return nil, errors.New("no DTSTART")
	}
	start, err := parseWall(dtstart.Value, from)
	if err != nil {
		return nil, err
	}
	base := onset{from: from, off: to, dst: sub.Name == goical.CompTimezoneDaylight, abbr: abbrev(obsValue(sub, goical.PropTimezoneName))}
	limit = min(limit, maxOnsets)
	var out []onset
	add := func(wall time.Time) bool {
		if len(out) >= limit {
			return false
		}
		if wall.Year() <= vtzLastYear {
			o := base
			o.at = wall.Unix() - int64(from)
			out = append(out, o)
		}
		return true
	}
	add(start)
	for _, p := range sub.Props.Values(goical.PropRecurrenceDates) {
		for _, v := range strings.Split(p.Value, ",") {
			if i := strings.IndexByte(v, '/'); i >= 0 { // PERIOD
				v = v[:i]
			}
			if w, err := parseWall(v, from); err == nil {
				add(w)
			}
		}
	}
	if p := sub.Props.Get(goical.PropRecurrenceRule); p != nil {
		ruleOnsets(p.Value, start, from, add)
	}
	return out, nil
}

func obsValue(c *goical.Component, name string) string {
	if p := c.Props.Get(name); p != nil {
		return p.Value
	}
	return ""
}

// ruleOnsets feeds the wall-clock onsets of an observance's RRULE to add
// until add refuses, the rule ends, or the year vtzLastYear is over. Only
// YEARLY and MONTHLY rules are read: other frequencies do not describe
// time zones, and an unmatched SECONDLY rule could run for long. A rule
// that cannot be read is ignored (the DTSTART onset stays).
func ruleOnsets(rule string, start time.Time, from int, add func(time.Time) bool) {
	rule = strings.ToUpper(strings.Join(strings.Fields(rule), ""))
	opt, err := rrule.StrToROption(rule)
	if err != nil || opt.Freq != rrule.YEARLY && opt.Freq != rrule.MONTHLY {
		return
	}
	limit := time.Date(vtzLastYear+1, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
	if !opt.Until.IsZero() {
		until := opt.Until // UTC (RFC 5545 §3.6.5) or, leniently, local
		if untilIsUTC(rule) {
			until = until.Add(time.Duration(from) * time.Second)
		}
		if until.Before(limit) {
			limit = until
		}
	}
	opt.Until = limit
	dt := start
	if opt.Freq == rrule.YEARLY && opt.Count == 0 && dt.Year() < vtzShiftYear && !(dt.Month() == time.February && dt.Day() == 29) {
		// Skip the centuries before vtzShiftYear (Exchange starts in 1601,
		// some clients in year 1): same rule, later start, whole intervals.
		interval := max(opt.Interval, 1)
		shift := vtzShiftYear - dt.Year()
		shift += (interval - shift%interval) % interval
		dt = dt.AddDate(shift, 0, 0)
	}
	opt.Dtstart = dt
	r, err := rrule.NewRRule(*opt)
	if err != nil {
		return
	}
	next := r.Iterator()
	for {
		t, ok := next()
		if !ok || t.After(limit) || !add(t) {
			return
		}
	}
}

func untilIsUTC(rule string) bool {
	for _, part := range strings.Split(rule, ";") {
		if v, ok := strings.CutPrefix(part, "UNTIL="); ok {
			return strings.HasSuffix(v, "Z")
		}
	}
	return false
}

// parseWall reads a DATE-TIME (or DATE) of an observance as wall-clock
// time in UTC fields. RFC 5545 wants local time; a trailing Z is accepted
// and converted with offset from.
func parseWall(v string, from int) (time.Time, error) {
	v = strings.TrimSpace(v)
	switch {
	case len(v) == 16 && (v[15] == 'Z' || v[15] == 'z'):
		t, err := time.Parse("20060102T150405", v[:15])
		if err != nil {
			return time.Time{}, fmt.Errorf("bad DATE-TIME %q: %w", v, err)
		}
		return t.Add(time.Duration(from) * time.Second), nil
	case len(v) == 15:
		t, err := time.Parse("20060102T150405", v)
		if err != nil {
			return time.Time{}, fmt.Errorf("bad DATE-TIME %q: %w", v, err)
		}
		return t, nil
	case len(v) == 8:
		t, err := time.Parse("20060102", v)
		if err != nil {
			return time.Time{}, fmt.Errorf("bad DATE %q: %w", v, err)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("bad DATE-TIME %q", v)
}

// parseOffset reads a UTC-OFFSET ("+0100", "-0230", "+003020"), in seconds.
// Hours must be below 24 and minutes and seconds below 60; "-0000" is 0.
func parseOffset(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if len(s) != 5 && len(s) != 7 || s[0] != '+' && s[0] != '-' {
		return 0, false
	}
	n := [3]int{}
	for i := 0; i < (len(s)-1)/2; i++ {
		a, b := s[1+2*i], s[2+2*i]
		if a < '0' || a > '9' || b < '0' || b > '9' {
			return 0, false
		}
		n[i] = int(a-'0')*10 + int(b-'0')
	}
	if n[0] > 23 || n[1] > 59 || n[2] > 59 {
		return 0, false
	}
	off := n[0]*3600 + n[1]*60 + n[2]
	if s[0] == '-' {
		off = -off
	}
	return off, true
}

// abbrev keeps a TZNAME as the zone abbreviation if it is short, printable
// UTF-8.
func abbrev(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 64 || !utf8.ValidString(s) {
		return ""
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return s
}

// tzif encodes a zone as TZif version 2 data (RFC 8536) for
// time.LoadLocationFromTZData. Type 0 is the zone before the first
// transition and no transition uses it, so that Go applies it to earlier
// times.
func tzif(first zoneType, trans []transition) ([]byte, error) {
	types := []zoneType{first}
	index := map[zoneType]uint8{}
	idx := make([]uint8, len(trans))
	for i, t := range trans {
		j, ok := index[t.zt]
		if !ok {
			if len(types) >= maxVTZZoneTypes {
				return nil, errors.New("too many distinct offsets")
			}
			j = uint8(len(types))
			index[t.zt] = j
			types = append(types, t.zt)
		}
		idx[i] = j
	}
	chars := []byte{0} // "" at index 0
	abbrIdx := map[string]uint8{"": 0}
	for _, t := range types {
		if _, ok := abbrIdx[t.abbr]; ok {
			continue
		}
		if len(chars)+len(t.abbr)+1 > 255 {
			continue // out of room: the zone goes unnamed
		}
		abbrIdx[t.abbr] = uint8(len(chars))
		chars = append(chars, t.abbr...)
		chars = append(chars, 0)
	}
	be := binary.BigEndian
	header := func(b []byte, timecnt, typecnt, charcnt int) []byte {
		b = append(b, "TZif2"...)
		b = append(b, make([]byte, 15)...)
		for _, n := range []int{0, 0, 0, timecnt, typecnt, charcnt} { // isutcnt, isstdcnt, leapcnt, ...
			b = be.AppendUint32(b, uint32(n))
		}
		return b
	}
	ttinfo := func(b []byte, t zoneType) []byte {
		b = be.AppendUint32(b, uint32(int32(t.off)))
		dst := byte(0)
		if t.dst {
			dst = 1
		}
		return append(b, dst, abbrIdx[t.abbr])
	}
	// Version 1 block: no transitions, one type, one (empty) name.
	b := header(nil, 0, 1, 1)
	b = ttinfo(b, zoneType{off: first.off, dst: first.dst})
	b = append(b, 0)
	// Version 2 block.
	b = header(b, len(trans), len(types), len(chars))
	for _, t := range trans {
		b = be.AppendUint64(b, uint64(t.at))
	}
	b = append(b, idx...)
	for _, t := range types {
		b = ttinfo(b, t)
	}
	b = append(b, chars...)
	b = append(b, '\n', '\n') // empty footer: no rule after the last transition
	return b, nil
}

// WallTime returns the instant at which the clocks of loc show the given
// wall-clock time, by the rules of RFC 5545 §3.3.5: a time that does not
// exist (skipped by a forward transition) is read with the offset in force
// before the transition, so 02:30 on a spring-forward day in New York is
// 07:30Z (03:30 EDT); a time that occurs twice (in the hour repeated by a
// backward transition) is its first occurrence. time.Date guarantees
// neither. The result is in loc.
func WallTime(year int, month time.Month, day, hour, min, sec int, loc *time.Location) time.Time {
	return wallToUTC(year, month, day, hour, min, sec, loc)
}

func wallToUTC(y int, mo time.Month, d, h, mi, s int, loc *time.Location) time.Time {
	naive := time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	if loc == time.UTC || loc == nil {
		return naive
	}
	offAt := func(u time.Time) time.Duration {
		_, off := u.In(loc).Zone()
		return time.Duration(off) * time.Second
	}
	// Candidate offsets: those in force a day either side, and Go's pick.
	before := offAt(naive.Add(-24 * time.Hour))
	_, goOff := time.Date(y, mo, d, h, mi, s, 0, loc).Zone()
	var best time.Time
	for _, off := range [...]time.Duration{before, offAt(naive.Add(24 * time.Hour)), time.Duration(goOff) * time.Second} {
		u := naive.Add(-off)
		if offAt(u) == off && (best.IsZero() || u.Before(best)) {
			best = u
		}
	}
	if !best.IsZero() {
		return best.In(loc)
	}
	// A gap: read with the offset in force just before it. Reading with
	// the earlier offset lands after the transition (x is the offset
	// after it); reading with x lands before it, where y is in force.
	x := offAt(naive.Add(-before))
	y2 := offAt(naive.Add(-x))
	return naive.Add(-y2).In(loc)
}
