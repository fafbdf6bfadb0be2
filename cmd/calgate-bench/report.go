package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The report subcommand puts the JSON of several runs side by side:
// calgate and Radicale at N events, the limits, calgate at 100,000 events
// and calgate's start-up on that data, with the targets of bench/targets.txt.

// figure names one number in a report.
type figure struct {
	op    string // operation row; "" for the peak RSS of the report
	field string // "ops", "p50" or "p99"
}

// compareRow is one line of the comparison.
type compareRow struct {
	key    string // in the targets file
	label  string
	unit   string
	higher bool   // a higher figure is better
	src    string // "" (the N-event runs), "100k", "startup" or "ratio100k"
	fig    figure
	limit  figure // zero when there is no limit
	note   string // what the limit is
}

// compareRows are the lines of the comparison, in the order of calgate's
// targets.
var compareRows = []compareRow{
	{key: "put_load", label: "PUT load (every write durable)", unit: "objects/s", higher: true, fig: figure{"put_load", "ops"}, limit: figure{"bbolt_update", "ops"}, note: "bbolt fsync'd commits, sequential"},
	{key: "put_update", label: "replace one object p50", unit: "ms", fig: figure{"put_update", "p50"}, limit: figure{"bbolt_update", "p50"}, note: "one bbolt fsync'd commit"},
	{key: "get", label: "GET one object", unit: "req/s", higher: true, fig: figure{"get", "ops"}, limit: figure{"limit_get", "ops"}, note: "Go handler, same bytes from memory"},
	{key: "propfind_d0", label: "PROPFIND Depth 0", unit: "req/s", higher: true, fig: figure{"propfind_d0", "ops"}, limit: figure{"limit_get", "ops"}, note: "Go handler, one object from memory"},
	{key: "propfind_d1", label: "PROPFIND Depth 1 p50", unit: "ms", fig: figure{"propfind_d1", "p50"}},
	{key: "query_month", label: "calendar-query month p50", unit: "ms", fig: figure{"query_month", "p50"}},
	{key: "query_week_expand", label: "week expand p50", unit: "ms", fig: figure{"query_week_expand", "p50"}},
	{key: "multiget_100", label: "multiget 100 p50", unit: "ms", fig: figure{"multiget_100", "p50"}},
	{key: "sync_after_change", label: "sync-collection after one change p50", unit: "ms", fig: figure{"sync_after_change", "p50"}},
	{key: "get_collection", label: "GET whole collection p50", unit: "ms", fig: figure{"get_collection", "p50"}, limit: figure{"limit_collection", "p50"}, note: "Go handler, same bytes from memory"},
	{key: "feed_get", label: "merged feed GET", unit: "req/s", higher: true, fig: figure{"feed_get", "ops"}, limit: figure{"limit_feed", "ops"}, note: "Go handler, same bytes from memory"},
	{key: "feed_after_change", label: "merged feed, first GET after a change p50", unit: "ms", fig: figure{"feed_after_change", "p50"}},
	{key: "feed_304", label: "merged feed 304", unit: "req/s", higher: true, fig: figure{"feed_304", "ops"}, limit: figure{"limit_get", "ops"}, note: "Go handler, one 1 KiB object"},
	{key: "mixed", label: "mixed read load", unit: "ops/s", higher: true, fig: figure{"mixed", "ops"}},
	{key: "mixed_p99", label: "mixed read load p99", unit: "ms", fig: figure{"mixed", "p99"}},
	{key: "peak_rss", label: "peak RSS", unit: "MB", fig: figure{"", "rss"}},
	{key: "query_month_100k", label: "calendar-query month p50, 100,000 events", unit: "ms", src: "100k", fig: figure{"query_month", "p50"}},
	{key: "query_month_100k_ratio", label: "calendar-query month p50, 100k / N", unit: "x", src: "ratio100k", fig: figure{"query_month", "p50"}},
	{key: "startup_100k", label: "start-up to ready, 100,000 events", unit: "ms", src: "startup", fig: figure{"startup_ready", "p50"}},
}

// target is a goal for one row, from the targets file.
type target struct {
	cmp   string // ">=" or "<="
	value float64
}

// value reads a figure from rep. ok is false when rep lacks it; wrong is
// the failure of an operation that ran and got a wrong answer.
func (f figure) value(rep *report) (v float64, ok bool, wrong string) {
	if rep == nil {
		return 0, false, ""
	}
	if f.field == "rss" {
		return float64(rep.PeakRSSKB) / 1024, rep.PeakRSSKB > 0, ""
	}
	r, found := rep.op(f.op)
	if !found {
		return 0, false, ""
	}
	if !r.OK {
		return 0, false, cmpOr(r.Error, "failed")
	}
	switch f.field {
	case "ops":
		return r.OpsPerSec, true, ""
	case "p50":
		return r.P50ms, true, ""
	case "p99":
		return r.P99ms, true, ""
	}
	return 0, false, ""
}

// comparison is the input of the comparison table.
type comparison struct {
	Calgate, Radicale, Limits, Calgate100k, Startup *report
	Targets                                         map[string]target
}

// calgateValue is the calgate figure of row r.
func (c *comparison) calgateValue(r compareRow) (float64, bool, string) {
	switch r.src {
	case "100k":
		return r.fig.value(c.Calgate100k)
	case "startup":
		return r.fig.value(c.Startup)
	case "ratio100k":
		big, ok1, w1 := r.fig.value(c.Calgate100k)
		small, ok2, w2 := r.fig.value(c.Calgate)
		if !ok1 || !ok2 || small == 0 {
			return 0, false, cmpOr(w1, w2)
		}
		return big / small, true, ""
	}
	return r.fig.value(c.Calgate)
}

// table returns the header and rows of the comparison, and footnotes.
func (c *comparison) table() (head []string, rows [][]string, notes []string) {
	head = []string{"operation", "unit", "calgate", "Radicale", "calgate/Radicale", "limit", "calgate of limit", "target", "met"}
	noteFor := map[string]int{}
	note := func(s string) string {
		if i, ok := noteFor[s]; ok {
			return fmt.Sprintf("[%d]", i)
		}
		notes = append(notes, s)
		noteFor[s] = len(notes)
		return fmt.Sprintf("[%d]", len(notes))
	}
	cell := func(v float64, ok bool, wrong, who string) string {
		switch {
		case wrong != "":
			return "WRONG " + note(who+": "+wrong)
		case !ok:
			return "-"
		}
		return formatNum(v)
	}
	for _, r := range compareRows {
		cv, cok, cwrong := c.calgateValue(r)
		row := []string{r.label, r.unit, cell(cv, cok, cwrong, "calgate "+r.key)}
		rv, rok, rwrong := 0.0, false, ""
		if r.src == "" {
			rv, rok, rwrong = r.fig.value(c.Radicale)
		}
		row = append(row, cell(rv, rok, rwrong, "Radicale "+r.key))
		if cok && rok && rv != 0 {
			row = append(row, formatRatio(cv/rv))
		} else {
			row = append(row, "-")
		}
		if r.limit.op != "" {
			lv, lok, lwrong := r.limit.value(c.Limits)
			lcell := cell(lv, lok, lwrong, "limit "+r.limit.op)
			if lok {
				lcell += " " + note(r.note)
			}
			row = append(row, lcell)
			if cok && lok && cv != 0 && lv != 0 {
				frac := cv / lv
				if !r.higher {
					frac = lv / cv
				}
				row = append(row, fmt.Sprintf("%.0f%%", 100*frac))
			} else {
				row = append(row, "-")
			}
		} else {
			row = append(row, "-", "-")
		}
		t, hasTarget := c.Targets[r.key]
		switch {
		case !hasTarget:
			row = append(row, "(not set)", "-")
		case !cok:
			row = append(row, t.cmp+" "+formatNum(t.value), "missed")
		default:
			met := cv >= t.value
			if t.cmp == "<=" {
				met = cv <= t.value
			}
			row = append(row, t.cmp+" "+formatNum(t.value), map[bool]string{true: "met", false: "missed"}[met])
		}
		rows = append(rows, row)
	}
	if bv, ok, _ := (figure{"bbolt_batch", "ops"}).value(c.Limits); ok {
		notes = append(notes, fmt.Sprintf("reference: bbolt db.Batch at c=%d, %s commits/s", c.Limits.C, formatNum(bv)))
	}
	for _, x := range []struct {
		who string
		rep *report
	}{{"calgate", c.Calgate}, {"Radicale", c.Radicale}, {"calgate 100k", c.Calgate100k}} {
		if x.rep != nil && x.rep.N > 0 {
			notes = append(notes, fmt.Sprintf("%s: N=%d, c=%d (latency rows: %d client), %d round(s) of %gs (medians), load: %s", x.who, x.rep.N, x.rep.C, x.rep.LatencyC, x.rep.Rounds, x.rep.DurationS, x.rep.Load))
		}
	}
	return head, rows, notes
}

// formatNum prints a figure with three significant digits or more.
func formatNum(v float64) string {
	switch {
	case v >= 1000:
		return thousands(int64(v + 0.5))
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// formatRatio prints a ratio.
func formatRatio(v float64) string {
	if v >= 10 {
		return formatNum(v) + "x"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + "x"
}

// thousands prints n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// writeText writes the comparison as an aligned table.
func (c *comparison) writeText(w io.Writer) {
	head, rows, notes := c.table()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	for i, n := range notes {
		fmt.Fprintf(w, "[%d] %s\n", i+1, n)
	}
}

// writeMarkdown writes the comparison as a Markdown table.
func (c *comparison) writeMarkdown(w io.Writer) {
	head, rows, notes := c.table()
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat(" --- |", len(head)))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, s := range r {
			cells[i] = esc(s)
		}
		fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
	}
	fmt.Fprintln(w)
	for i, n := range notes {
		fmt.Fprintf(w, "%d. %s\n", i+1, esc(n))
	}
}

// readTargets reads a targets file: one "KEY >= VALUE" or "KEY <= VALUE"
// a line, '#' comments; a VALUE of "?" leaves the target unset.
func readTargets(file string) (map[string]target, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]target{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 || (fields[1] != ">=" && fields[1] != "<=") {
			return nil, fmt.Errorf("%s:%d: want KEY >= VALUE or KEY <= VALUE", file, n)
		}
		if !validKey(fields[0]) {
			return nil, fmt.Errorf("%s:%d: unknown row %q", file, n, fields[0])
		}
		if fields[2] == "?" {
			continue
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(fields[2], ",", ""), 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		out[fields[0]] = target{cmp: fields[1], value: v}
	}
	return out, sc.Err()
}

func validKey(k string) bool {
	for _, r := range compareRows {
		if r.key == k {
			return true
		}
	}
	return false
}

func reportCmd(args []string, stdout, stderr io.Writer) int {
	files := map[string]*string{}
	var targets, md string
	fs := flag.NewFlagSet("calgate-bench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: calgate-bench report -calgate FILE [flags]

Prints calgate's figures beside Radicale's (with the ratio
calgate/Radicale), the limits (with calgate as a fraction of each) and the
targets (met or missed), from the JSON files of calgate-bench runs. A
missing file leaves its columns empty; a wrong answer shows as WRONG.

Flags:
`)
		fs.PrintDefaults()
	}
	for _, f := range []struct{ name, help string }{
		{"calgate", "JSON of the run against calgate (required)"},
		{"radicale", "JSON of the run against Radicale"},
		{"limits", "JSON of calgate-bench limits"},
		{"calgate-100k", "JSON of the run against calgate at 100,000 events"},
		{"startup", "JSON of calgate-bench startup on the 100,000-event data"},
	} {
		files[f.name] = fs.String(f.name, "", f.help)
	}
	fs.StringVar(&targets, "targets", "", "targets file (KEY >= VALUE or KEY <= VALUE a line)")
	fs.StringVar(&md, "md", "", "also write the table as Markdown to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *files["calgate"] == "" {
		fmt.Fprintln(stderr, "calgate-bench report: -calgate is required")
		return 2
	}
	var c comparison
	for name, dst := range map[string]**report{
		"calgate": &c.Calgate, "radicale": &c.Radicale, "limits": &c.Limits,
		"calgate-100k": &c.Calgate100k, "startup": &c.Startup,
	} {
		if *files[name] == "" {
			continue
		}
		r, err := readJSON(*files[name])
		if err != nil {
			fmt.Fprintf(stderr, "calgate-bench report: -%s: %v\n", name, err)
			if name == "calgate" {
				return 1
			}
			continue
		}
		*dst = r
	}
	if targets != "" {
		t, err := readTargets(targets)
		if err != nil {
			fmt.Fprintf(stderr, "calgate-bench report: %v\n", err)
			return 1
		}
		c.Targets = t
	}
	c.writeText(stdout)
	if md != "" {
		f, err := os.Create(md)
		if err == nil {
			c.writeMarkdown(f)
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintf(stderr, "calgate-bench report: %v\n", err)
			return 1
		}
	}
	return 0
}
