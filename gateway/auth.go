package gateway

import (
	"crypto/sha256"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// authenticator checks HTTP Basic credentials against bcrypt hashes,
// remembering verified credentials per client address for a while
// (clients send them with every request, and a bcrypt comparison costs
// tens of milliseconds), and rate-limiting failed attempts per user and
// per address.
type authenticator struct {
	hashes map[string][]byte // read only after construction
	ttl    time.Duration
	now    func() time.Time
	// trusted are the reverse proxies whose X-Forwarded-For names the
	// address failed sign-ins count against (see clientAddr).
	trusted []netip.Prefix

	mu       sync.Mutex                 // protects the following
	verified map[[32]byte]time.Time     // sha256(user, password, address) -> expiry
	limiters map[string]*failureLimiter // "u:"+user or "a:"+address
}

type failureLimiter struct {
	lim  *rate.Limiter
	seen time.Time
}

// Failed logins: a burst of failureBurst, then one every failureEvery.
const (
	failureBurst    = 10
	failureEvery    = 2 * time.Second
	maxVerified     = 10000
	maxLimiterCount = 10000
)

func newAuthenticator(users []User, ttl time.Duration) *authenticator {
	a := &authenticator{
		hashes:   make(map[string][]byte, len(users)),
		ttl:      ttl,
		now:      time.Now,
		verified: make(map[[32]byte]time.Time),
		limiters: make(map[string]*failureLimiter),
	}
	for _, u := range users {
		a.hashes[u.Name] = []byte(u.PasswordHash)
	}
	return a
}

// dummyHash makes a check for an unknown user cost as much as for a known one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("calgate-dummy"), bcrypt.MinCost)

// authenticate returns the signed-in user, or a 401 / 429 error.
func (a *authenticator) authenticate(r *http.Request) (string, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", errf(http.StatusUnauthorized, "sign in with HTTP Basic authentication")
	}
	now := a.now()
	// Remembered credentials are bound to the address that proved them,
	// and are checked after the address's own limit but before the
	// user's: a client that signed in keeps working while someone
	// elsewhere floods its user name with wrong passwords, and a guess
	// during a lockout is never told right from wrong (from an address
	// that has not proved the password, every attempt gets 429).
	addr := clientAddr(r, a.trusted)
	if !a.allow("a:"+addr, now) {
		return "", errf(http.StatusTooManyRequests, "too many failed sign-ins; wait and try again")
	}
	key := credKey(user, pass, addr)
	a.mu.Lock()
	exp, hit := a.verified[key]
	a.mu.Unlock()
	if hit && now.Before(exp) {
		return user, nil
	}
	if !a.allow("u:"+user, now) {
		// Counted against the address, so that guessing during a lockout
		// from an address that shares a remembered password (a NAT) soon
		// locks that address as well.
		a.fail("a:"+addr, now)
		return "", errf(http.StatusTooManyRequests, "too many failed sign-ins; wait and try again")
	}
	hash, known := a.hashes[user]
	if !known {
		hash = dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !known {
		a.fail("u:"+user, now)
		a.fail("a:"+addr, now)
		return "", errf(http.StatusUnauthorized, "wrong user name or password")
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerified {
		clear(a.verified)
	}
	a.verified[key] = now.Add(a.ttl)
	a.mu.Unlock()
	return user, nil
}

// setAuthHeaders adds the headers an authentication failure carries: the
// Basic challenge on a 401, and on a 429 (the failed sign-in limit) when
// one more attempt becomes possible.
func setAuthHeaders(w http.ResponseWriter, status int) {
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="calgate", charset="UTF-8"`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(int(failureEvery/time.Second)))
	}
}

// credKey identifies credentials proved from one client address.
func credKey(user, pass, addr string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pass))
	h.Write([]byte{0})
	h.Write([]byte(addr))
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

// allow reports whether key still has failed attempts left.
func (a *authenticator) allow(key string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limiters[key]
	return !ok || l.lim.TokensAt(now) >= 1
}

func (a *authenticator) fail(key string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limiters[key]
	if !ok {
		if len(a.limiters) >= maxLimiterCount {
			for k, v := range a.limiters {
				if now.Sub(v.seen) > time.Hour {
					delete(a.limiters, k)
				}
			}
		}
		l = &failureLimiter{lim: rate.NewLimiter(rate.Every(failureEvery), failureBurst)}
		a.limiters[key] = l
	}
	l.seen = now
	l.lim.AllowN(now, 1)
}
