package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// FrameWriter writes frames to an HTTP response, flushing each, safely from
// several goroutines.
type FrameWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
	rc  *http.ResponseController
}

// NewFrameWriter starts a framed response.
func NewFrameWriter(w http.ResponseWriter) *FrameWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &FrameWriter{enc: json.NewEncoder(w), rc: http.NewResponseController(w)}
}

// Write sends one frame.
func (fw *FrameWriter) Write(f Frame) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if err := fw.enc.Encode(f); err != nil {
		return err
	}
	return fw.rc.Flush()
}

// Stream returns a writer whose every Write becomes a frame on stream.
func (fw *FrameWriter) Stream(name string) io.Writer { return streamWriter{fw, name} }

type streamWriter struct {
	fw   *FrameWriter
	name string
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.fw.Write(Frame{Stream: s.name, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadFrames copies stream frames from r to stdout and stderr and returns
// the exit status of the final frame.
func ReadFrames(r io.Reader, stdout, stderr io.Writer) (int, error) {
	dec := json.NewDecoder(r)
	for {
		var f Frame
		if err := dec.Decode(&f); err != nil {
			if errors.Is(err, io.EOF) {
				return -1, errors.New("command stream ended without an exit status")
			}
			return -1, fmt.Errorf("read command stream: %w", err)
		}
		switch {
		case f.Error != "":
			return -1, errors.New(f.Error)
		case f.Exit != nil:
			return *f.Exit, nil
		case f.Stream == "stderr":
			if _, err := stderr.Write(f.Data); err != nil {
				return -1, err
			}
		default:
			if _, err := stdout.Write(f.Data); err != nil {
				return -1, err
			}
		}
	}
}
