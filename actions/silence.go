package actions

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"time"

	clientruntime "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"
)

// Silencer creates and expires Alertmanager silences through the API v2
// client from the Alertmanager module, as amtool does.
type Silencer struct {
	api *client.AlertmanagerAPI
}

// NewSilencer talks to the Alertmanager at u with hc (nil: the default
// client).
func NewSilencer(u *url.URL, hc *http.Client) *Silencer {
	if hc == nil {
		hc = http.DefaultClient
	}
	rt := clientruntime.NewWithClient(u.Host, path.Join(u.Path, "/api/v2"), []string{u.Scheme}, hc)
	return &Silencer{api: client.New(rt, strfmt.Default)}
}

// SilenceSpec silences the alerts whose labels equal Labels, every one of
// them, so that exactly the incident's alert is silenced.
type SilenceSpec struct {
	Tool     string
	Labels   map[string]string
	Duration time.Duration
	Comment  string
}

// SilenceResult is what a silence call did, for the journal.
type SilenceResult struct {
	ID       string    `json:"silence_id"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
}

// Silence creates the silence if a allows the tool. Its rollback is Expire.
func (s *Silencer) Silence(ctx context.Context, a *Allowed, spec SilenceSpec, now time.Time) (SilenceResult, error) {
	if !a.permits(spec.Tool) {
		return SilenceResult{}, fmt.Errorf("silence %s: %w", spec.Tool, ErrNotAllowed)
	}
	if len(spec.Labels) == 0 || spec.Duration <= 0 {
		return SilenceResult{}, fmt.Errorf("silence %s: no labels or no duration", spec.Tool)
	}
	names := make([]string, 0, len(spec.Labels))
	for k := range spec.Labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var matchers models.Matchers
	for _, k := range names {
		name, value, isRegex, isEqual := k, spec.Labels[k], false, true
		matchers = append(matchers, &models.Matcher{Name: &name, Value: &value, IsRegex: &isRegex, IsEqual: &isEqual})
	}
	start, end := strfmt.DateTime(now), strfmt.DateTime(now.Add(spec.Duration))
	createdBy, comment := "medic", spec.Comment
	if comment == "" {
		comment = "silenced by medic while it remediates"
	}
	res, err := s.api.Silence.PostSilences(silence.NewPostSilencesParamsWithContext(ctx).WithSilence(&models.PostableSilence{
		Silence: models.Silence{Matchers: matchers, StartsAt: &start, EndsAt: &end, CreatedBy: &createdBy, Comment: &comment},
	}))
	if err != nil {
		return SilenceResult{}, fmt.Errorf("silence %s: %w", spec.Tool, err)
	}
	return SilenceResult{ID: res.Payload.SilenceID, StartsAt: now, EndsAt: now.Add(spec.Duration)}, nil
}

// Expire ends a silence, the rollback of Silence.
func (s *Silencer) Expire(ctx context.Context, a *Allowed, tool, id string) error {
	if !a.permits(tool) {
		return fmt.Errorf("expire silence %s: %w", id, ErrNotAllowed)
	}
	if _, err := s.api.Silence.DeleteSilence(silence.NewDeleteSilenceParamsWithContext(ctx).WithSilenceID(strfmt.UUID(id))); err != nil {
		return fmt.Errorf("expire silence %s: %w", id, err)
	}
	return nil
}
