package traffic

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// classify maps the error that ended a connection to its outcome:
// ECONNRESET, ECONNABORTED and EPIPE are resets; ECONNREFUSED is refused;
// deadlines (a read or connect that waited too long), ETIMEDOUT and
// EHOSTUNREACH (reported once neighbour resolution or retransmissions gave
// up) are timeouts; EADDRNOTAVAIL and EADDRINUSE (no free local port) are
// exhaustion; anything else is an error.
func classify(err error) Outcome {
	var ne net.Error
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return OutcomeExhausted
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return OutcomeReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH):
		return OutcomeTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	default:
		return OutcomeError
	}
}
