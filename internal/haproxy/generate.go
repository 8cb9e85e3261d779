package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/haproxytech/client-native/v6/configuration"
	cfgopt "github.com/haproxytech/client-native/v6/configuration/options"
	"github.com/haproxytech/client-native/v6/models"
)

// defaultsName names the defaults section: client-native v6 only creates
// named defaults sections.
const defaultsName = "lab"

// defaultBinary is where Debian installs HAProxy; it is used when haproxy
// is not on PATH.
const defaultBinary = "/usr/sbin/haproxy"

// Binary returns the path of the haproxy program.
func Binary() (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(defaultBinary); err != nil {
		return "", fmt.Errorf("find haproxy binary: %w", err)
	}
	return defaultBinary, nil
}

// clientNative serialises the use of client-native's configuration
// client (see Generate).
var clientNative sync.Mutex

// Generate builds the HAProxy configuration of an LB7 through
// client-native's configuration client: it starts from an empty file in a
// temporary directory, creates every section, bind, ACL, rule and server
// in one transaction, commits it (client-native then checks it with
// "haproxy -W -c") and returns the resulting file.
func Generate(cfg Config) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate haproxy configuration: %w", err)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "lab-haproxy-")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	file := filepath.Join(tmp, configFileName)
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		return nil, fmt.Errorf("create empty configuration: %w", err)
	}
	// client-native's parser writes a package variable as it reads a
	// defaults section (config-parser's DefaultSectionName, v6.2.5): two
	// clients at once race on it. One configuration at a time.
	clientNative.Lock()
	defer clientNative.Unlock()
	// client-native runs "haproxy -v" here to learn the version.
	client, err := configuration.New(context.Background(),
		cfgopt.ConfigurationFile(file),
		cfgopt.HAProxyBin(bin),
		cfgopt.TransactionsDir(filepath.Join(tmp, "transactions")),
		cfgopt.UseModelsValidation,
		// Without this option, v6.2.5 writes bare milliseconds:
		// New defaults to "nearest" but only the option maps it to
		// the suffix SerializeTime understands.
		cfgopt.PreferredTimeSuffix("nearest"),
	)
	if err != nil {
		return nil, fmt.Errorf("create configuration client: %w", err)
	}
	version, err := client.GetVersion("")
	if err != nil {
		return nil, fmt.Errorf("read configuration version: %w", err)
	}
	tx, err := client.StartTransaction(version)
	if err != nil {
		return nil, fmt.Errorf("start transaction: %w", err)
	}
	b := builder{c: client, tx: tx.ID}
	b.build(cfg)
	if b.err != nil {
		_ = client.DeleteTransaction(tx.ID)
		return nil, b.err
	}
	if _, err := client.CommitTransaction(tx.ID); err != nil {
		return nil, fmt.Errorf("commit haproxy configuration: %w", err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read generated configuration: %w", err)
	}
	return data, nil
}

// builder records the first error of a sequence of client-native calls
// made in one transaction.
type builder struct {
	c   configuration.Configuration
	tx  string
	err error
}

func (b *builder) do(what string, f func() error) {
	if b.err != nil {
		return
	}
	if err := f(); err != nil {
		b.err = fmt.Errorf("%s: %w", what, err)
	}
}

func (b *builder) build(cfg Config) {
	const parentFrontend, parentBackend = "frontend", "backend"
	b.do("set global section", func() error {
		return b.c.PushGlobalConfiguration(&models.Global{GlobalBase: models.GlobalBase{
			RuntimeAPIs: []*models.RuntimeAPI{{
				Address: ptr(cfg.StatsSocket()),
				BindParams: models.BindParams{
					Mode:              "600",
					Level:             models.BindParamsLevelAdmin,
					ExposeFdListeners: true,
				},
			}},
			PerformanceOptions: &models.PerformanceOptions{Maxconn: int64(cfg.Maxconn)},
		}}, b.tx, 0)
	})
	b.do("create defaults section", func() error {
		return b.c.CreateDefaultsSection(&models.Defaults{DefaultsBase: models.DefaultsBase{
			Name:           defaultsName,
			Mode:           models.DefaultsBaseModeHTTP,
			Dontlognull:    models.DefaultsBaseDontlognullEnabled,
			ConnectTimeout: millis(cfg.TimeoutConnect),
			ClientTimeout:  millis(cfg.TimeoutClient),
			ServerTimeout:  millis(cfg.TimeoutServer),
		}}, b.tx, 0)
	})

	// Frontend: VIPs, the health check address, the monitor URI failing
	// when no server is usable or the enabler is down.
	b.do("create frontend "+FrontendName, func() error {
		return b.c.CreateFrontend(&models.Frontend{FrontendBase: models.FrontendBase{
			Name:           FrontendName,
			DefaultBackend: BackendServers,
			MonitorURI:     models.MonitorURI(HealthURI),
			MonitorFail: &models.MonitorFail{
				Cond:     ptr("if"),
				CondTest: ptr("dead || disabled"),
			},
		}}, b.tx, 0)
	})
	binds := make([]netip.AddrPort, 0, len(cfg.VIPs)+1)
	for _, v := range cfg.VIPs {
		binds = append(binds, netip.AddrPortFrom(v.Address, uint16(v.Port)))
	}
	binds = append(binds, cfg.healthAddrPort())
	for _, ap := range binds {
		b.do("create bind "+ap.String(), func() error {
			return b.c.CreateBind(parentFrontend, FrontendName, &models.Bind{
				Address: ap.Addr().String(),
				Port:    ptr(int64(ap.Port())),
			}, b.tx, 0)
		})
	}
	for i, acl := range []models.ACL{
		{ACLName: "dead", Criterion: "nbsrv(" + BackendServers + ")", Value: "lt 1"},
		{ACLName: "disabled", Criterion: "nbsrv(" + BackendEnabler + ")", Value: "lt 1"},
	} {
		b.do("create acl "+acl.ACLName, func() error {
			return b.c.CreateACL(int64(i), parentFrontend, FrontendName, &acl, b.tx, 0)
		})
	}
	b.do("create http-response rule", func() error {
		return b.c.CreateHTTPResponseRule(0, parentFrontend, FrontendName, &models.HTTPResponseRule{
			Type:      "set-header",
			HdrName:   NodeHeader,
			HdrFormat: cfg.Node,
		}, b.tx, 0)
	})

	// Backend servers: HTTP checks plus the agent on every server.
	b.do("create backend "+BackendServers, func() error {
		return b.c.CreateBackend(&models.Backend{BackendBase: models.BackendBase{
			Name:     BackendServers,
			Balance:  &models.Balance{Algorithm: ptr(models.BalanceAlgorithmRoundrobin)},
			AdvCheck: models.BackendBaseAdvCheckHttpchk,
			HttpchkParams: &models.HttpchkParams{
				Method: models.HttpchkParamsMethodGET,
				URI:    HealthURI,
			},
		}}, b.tx, 0)
	})
	for _, s := range cfg.Servers {
		params := models.ServerParams{
			Check:      models.ServerParamsCheckEnabled,
			Inter:      millis(cfg.CheckInterval),
			Rise:       ptr(int64(cfg.Rise)),
			Fall:       ptr(int64(cfg.Fall)),
			AgentCheck: models.ServerParamsAgentCheckEnabled,
			AgentPort:  ptr(int64(cfg.AgentPort)),
			AgentInter: millis(cfg.AgentInterval),
		}
		if cfg.SendProxy {
			params.SendProxy = models.ServerParamsSendProxyEnabled
			params.CheckSendProxy = models.ServerParamsCheckSendProxyEnabled
		}
		b.do("create server "+s.Name, func() error {
			return b.c.CreateServer(parentBackend, BackendServers, &models.Server{
				Name:         s.Name,
				Address:      s.Address.String(),
				Port:         ptr(int64(s.Port)),
				ServerParams: params,
			}, b.tx, 0)
		})
	}

	// Backend enabler: the fake server of the reference lab, with no port
	// and no health check, only the LB7's own agent.
	b.do("create backend "+BackendEnabler, func() error {
		return b.c.CreateBackend(&models.Backend{BackendBase: models.BackendBase{
			Name: BackendEnabler,
		}}, b.tx, 0)
	})
	b.do("create server "+EnablerServer, func() error {
		return b.c.CreateServer(parentBackend, BackendEnabler, &models.Server{
			Name:    EnablerServer,
			Address: cfg.EnablerAgent.Addr().String(),
			ServerParams: models.ServerParams{
				AgentCheck: models.ServerParamsAgentCheckEnabled,
				AgentPort:  ptr(int64(cfg.EnablerAgent.Port())),
				AgentInter: millis(cfg.AgentInterval),
			},
		}, b.tx, 0)
	})
}

func ptr[T any](v T) *T { return &v }

func millis(d time.Duration) *int64 { return ptr(d.Milliseconds()) }

// ErrCheck is wrapped by Check when haproxy rejects a configuration.
var ErrCheck = errors.New("haproxy rejected the configuration")

// Check runs "haproxy -c -f cfgPath" and returns haproxy's output in the
// error when the configuration is invalid.
func Check(cfgPath string) error {
	_, err := check(cfgPath)
	return err
}

// check runs "haproxy -c -f cfgPath" and returns its output, which holds
// the warnings of a valid configuration.
func check(cfgPath string) (string, error) {
	bin, err := Binary()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "-c", "-f", cfgPath).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("check %s: %w: %w: %s", cfgPath, ErrCheck, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
