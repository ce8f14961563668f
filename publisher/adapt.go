package publisher

import (
	"context"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/targets"
)

// What a target learned about its server (extra sessions that do not
// work) is kept in the state database, so that the next process starts
// from it instead of finding out again, which can cost an operation
// timeout. The memory lasts AdaptationMemory from the last time a process
// found it out; after that a process tries the default again.

// AdaptationMemory is how long a target's server is remembered to need a
// fallback.
const AdaptationMemory = 24 * time.Hour

func adaptationKey(target string) string { return "adaptation " + target }

// recallAdaptation hands a target what an earlier process learned about
// its server, if that is recent.
func (e *Engine) recallAdaptation(log *zap.Logger, t targets.Target) {
	a, ok := t.(targets.Adapter)
	if !ok || e.DB == nil {
		return
	}
	v, found, err := e.DB.Meta(context.Background(), adaptationKey(t.Name()))
	if err != nil || !found {
		return
	}
	at, token, ok := strings.Cut(v, " ")
	sec, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || e.now().Sub(time.Unix(sec, 0)) > AdaptationMemory {
		return
	}
	a.Recall(token)
	log.Debug("recalled what an earlier push learned about the server", zap.String("token", token))
}

// rememberAdaptation records what a target learned in this process.
func (e *Engine) rememberAdaptation(log *zap.Logger, t targets.Target) {
	a, ok := t.(targets.Adapter)
	if !ok || e.DB == nil {
		return
	}
	token := a.Learned()
	if token == "" {
		return
	}
	v := strconv.FormatInt(e.now().Unix(), 10) + " " + token
	if err := e.DB.SetMeta(context.Background(), adaptationKey(t.Name()), v); err != nil {
		log.Warn("remember how the target adapted to its server", zap.Error(err))
	}
}
