package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// methods are the HTTP methods calgate serves; any other method is
// counted as "other", so that a client cannot grow the label set.
var methods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPut: true, http.MethodDelete: true,
	http.MethodOptions: true, http.MethodPost: true,
	"PROPFIND": true, "PROPPATCH": true, "REPORT": true, "MKCALENDAR": true, "MKCOL": true,
	"MOVE": true, "COPY": true,
}

// methodLabel is the method label of a request with method.
func methodLabel(method string) string {
	if methods[method] {
		return method
	}
	return "other"
}

// Instrument counts every request next answers in
// calgate_http_requests_total{method,code} and times it in
// calgate_http_request_duration_seconds{method}. Paths are not labels.
// The ResponseWriter next gets unwraps to the original one, so that
// http.ResponseController (flush, deadlines) keeps working.
func (m *Metrics) Instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		// A handler that panics is not counted: net/http drops the
		// connection, and no status was sent.
		status := rec.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends 200
		}
		method := methodLabel(r.Method)
		m.requests.WithLabelValues(method, strconv.Itoa(status)).Inc()
		m.reqDuration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder remembers the status a handler sent.
type statusRecorder struct {
	http.ResponseWriter
	status int // 0 until the header is written
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code // 1xx are interim responses; the final one follows
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// Flush sends buffered data to the client, for handlers that assert
// http.Flusher instead of using http.ResponseController.
func (s *statusRecorder) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap returns the original ResponseWriter, for
// http.ResponseController.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
