"""WeCom (企业微信) external-contact support: callback crypto (:mod:`.crypto`), typed callback
events (:mod:`.callbacks`), the API client (:mod:`.client`), its errors (:mod:`.errors`) and a
local protocol server for tests and the demo (:mod:`.testserver`). No Django models here: the
carriers app wraps this package in its WeCom adapter. See docs/wecom.md."""
