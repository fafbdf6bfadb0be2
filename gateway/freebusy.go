package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// busy is one busy period of a free-busy answer.
type busy struct {
	start, end time.Time
}

// freeBusy answers free-busy-query (RFC 4791 §7.10): one VFREEBUSY with
// the merged busy periods of the calendar in the range. Recurring events
// are expanded; TRANSP:TRANSPARENT and cancelled events are free;
// STATUS:TENTATIVE is BUSY-TENTATIVE; FREEBUSY properties of stored
// VFREEBUSY components count with their FBTYPE.
func (h *Handler) freeBusy(w http.ResponseWriter, req *request, body *reportBody) error {
	if req.t.kind != kindCalendar {
		return errf(http.StatusForbidden, "free-busy-query must be sent to a calendar collection")
	}
	if body.TimeRange == nil {
		return invalidFilter("free-busy-query needs a CALDAV:time-range")
	}
	start, end, err := parseTimeRange(body.TimeRange)
	if err != nil {
		return err
	}
	if start.IsZero() || end.IsZero() {
		return invalidFilter("free-busy-query needs a time-range with both start and end")
	}
	cal, err := h.store.GetCalendar(req.user, req.t.cal)
	if err != nil {
		return storeErr(err)
	}
	objs, err := h.rangeObjects(cal, start, end)
	if err != nil {
		return err
	}
	floating := h.floatingZone("", &cal)
	periods := make(map[string][]busy) // FBTYPE -> periods
	clip := func(fbtype string, s, e time.Time) {
		if s.Before(start) {
			s = start
		}
		if e.After(end) {
			e = end
		}
		if e.After(s) {
			periods[fbtype] = append(periods[fbtype], busy{s.UTC(), e.UTC()})
		}
	}
	for _, o := range objs {
		parsed, err := ical.Parse(o.Data)
		if err != nil {
			continue
		}
		tz := h.zones.For(parsed.Component)
		var events []*goical.Component
		for _, c := range parsed.Children {
			switch c.Name {
			case goical.CompEvent:
				events = append(events, c)
			case goical.CompFreeBusy:
				for _, p := range c.Props.Values(goical.PropFreeBusy) {
					fbtype := strings.ToUpper(p.Params.Get("FBTYPE"))
					if fbtype == "" {
						fbtype = "BUSY"
					}
					if fbtype == "FREE" {
						continue
					}
					for _, v := range strings.Split(p.Value, ",") {
						if s, e, ok := parsePeriod(v); ok {
							clip(fbtype, s, e)
						}
					}
				}
			}
		}
		if len(events) == 0 {
			continue
		}
		wallStart, wallEnd := start, end
		shift := floating != nil && isFloating(parsed.Component)
		if shift {
			wallStart, wallEnd = wallClock(start, floating), wallClock(end, floating)
		}
		exp, err := tz.Expand(events, ical.ExpandOptions{Start: wallStart, End: wallEnd, MaxInstances: h.maxInstances})
		if err != nil {
			continue
		}
		if shift {
			for i := range exp.Instances {
				in := &exp.Instances[i]
				in.Start, in.End = fromWall(in.Start, floating), fromWall(in.End, floating)
			}
		}
		for _, inst := range exp.Instances {
			c := inst.Comp
			if inst.Cancelled || strings.EqualFold(propValue(c, goical.PropTransparency), "TRANSPARENT") {
				continue
			}
			fbtype := "BUSY"
			if strings.EqualFold(propValue(c, goical.PropStatus), "TENTATIVE") {
				fbtype = "BUSY-TENTATIVE"
			}
			clip(fbtype, inst.Start, inst.End)
		}
	}
	now := time.Now().UTC().Format("20060102T150405Z")
	b := []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//calgate//EN\r\nBEGIN:VFREEBUSY\r\n")
	b = append(b, fmt.Sprintf("DTSTAMP:%s\r\nDTSTART:%s\r\nDTEND:%s\r\n", now,
		start.Format("20060102T150405Z"), end.Format("20060102T150405Z"))...)
	for _, fbtype := range []string{"BUSY", "BUSY-TENTATIVE", "BUSY-UNAVAILABLE"} {
		merged := mergeBusy(periods[fbtype])
		if len(merged) == 0 {
			continue
		}
		vals := make([]string, len(merged))
		for i, p := range merged {
			vals[i] = p.start.Format("20060102T150405Z") + "/" + p.end.Format("20060102T150405Z")
		}
		b = ical.FoldLine(b, "FREEBUSY;FBTYPE="+fbtype+":"+strings.Join(vals, ","))
	}
	b = append(b, "END:VFREEBUSY\r\nEND:VCALENDAR\r\n"...)
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(b)
	}
	return nil
}

// mergeBusy sorts periods and joins those that overlap or touch.
func mergeBusy(ps []busy) []busy {
	slices.SortFunc(ps, func(a, b busy) int { return a.start.Compare(b.start) })
	var out []busy
	for _, p := range ps {
		if n := len(out); n > 0 && !p.start.After(out[n-1].end) {
			if p.end.After(out[n-1].end) {
				out[n-1].end = p.end
			}
			continue
		}
		out = append(out, p)
	}
	return out
}

// parsePeriod reads a UTC PERIOD value: start/end or start/duration.
func parsePeriod(v string) (time.Time, time.Time, bool) {
	s, e, ok := strings.Cut(strings.TrimSpace(v), "/")
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	st, err := time.Parse("20060102T150405Z", s)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	if et, err := time.Parse("20060102T150405Z", e); err == nil {
		return st, et, true
	}
	d, err := ical.ParseDuration(e)
	if err != nil || d <= 0 {
		return time.Time{}, time.Time{}, false
	}
	return st, st.Add(d), true
}

func propValue(c *goical.Component, name string) string {
	if p := c.Props.Get(name); p != nil {
		return strings.TrimSpace(p.Value)
	}
	return ""
}

// rangeObjects returns the objects of cal (for a merged calendar, its
// visible objects) whose stored span overlaps start..end, with Data.
func (h *Handler) rangeObjects(cal cache.Calendar, start, end time.Time) ([]cache.Object, error) {
	if cal.Kind == kindMerged {
		v, err := h.mergedView(cal)
		if err != nil {
			return nil, storeErr(err)
		}
		found, err := h.mergedSelect(v, &rangeHint{start: start, end: end}, nil)
		if err != nil {
			return nil, err
		}
		objs := make([]cache.Object, len(found))
		for i, res := range found {
			objs[i] = *res.obj
		}
		return objs, nil
	}
	names, err := h.store.Candidates(cal.User, cal.ID, "", start, end)
	if err != nil {
		return nil, storeErr(err)
	}
	objs, err := h.store.GetObjects(cal.User, cal.ID, names)
	if err != nil {
		return nil, storeErr(err)
	}
	return objs, nil
}
