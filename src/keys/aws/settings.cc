#include "keys/aws/settings.h"

#include <cctype>
#include <charconv>
#include <map>
#include <optional>

namespace kmsfs::aws {
namespace {

using Section = std::map<std::string, std::string>;

std::string lowercase(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The profile's own section of the config file: settings other than credentials are read
// from there only (the credentials file holds keys, as for the SDKs).
const Section* config_profile(const ProfileFiles& f, const std::string& profile) {
  const std::string names[] = {"profile " + profile, profile == "default" ? "default" : ""};
  for (const std::string& n : names) {
    if (n.empty()) continue;
    if (auto it = f.config.find(n); it != f.config.end()) return &it->second;
  }
  return nullptr;
}

// One setting: its environment variable, else the profile's key. `where` names whichever
// was used, for an error message.
struct Setting {
  std::optional<std::string> value;
  std::string where;
};
Setting lookup(const Env& env, const char* var, const Section* profile, const std::string& profile_name,
               const char* key) {
  if (auto v = env.get(var)) return {*v, var};
  if (profile) {
    if (auto it = profile->find(key); it != profile->end() && !it->second.empty())
      return {it->second, std::string(key) + " in AWS profile '" + profile_name + "'"};
  }
  return {};
}

Result<bool> boolean(const Setting& s) {
  if (!s.value) return false;
  std::string v = lowercase(*s.value);
  if (v == "true") return true;
  if (v == "false") return false;
  return Status(Code::kInvalidArgument, s.where + " must be true or false, not '" + *s.value + "'");
}

Result<RetrySettings> retry_from(const Env& env, const Section* p, const std::string& name) {
  RetrySettings r;
  if (Setting s = lookup(env, "AWS_MAX_ATTEMPTS", p, name, "max_attempts"); s.value) {
    const std::string& v = *s.value;
    int n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > 20)
      return Status(Code::kInvalidArgument, s.where + " must be a number from 1 to 20, not '" + v + "'");
    r.max_attempts = n;
  }
  if (Setting s = lookup(env, "AWS_RETRY_MODE", p, name, "retry_mode"); s.value) {
    std::string v = lowercase(*s.value);
    if (v != "standard" && v != "adaptive" && v != "legacy")
      return Status(Code::kInvalidArgument, s.where + " must be standard, adaptive or legacy, not '" + *s.value + "'");
    r.mode = v;
    r.adaptive = v == "adaptive";
  }
  return r;
}

}  // namespace

Result<AwsSettings> resolve_settings(const AwsKmsOptions& o, const Env& env) {
  AwsSettings s;
  s.profile = o.profile.empty() ? profile_name(env) : o.profile;
  const ProfileFiles files = ProfileFiles::load(env);
  const Section* p = config_profile(files, s.profile);

  s.region = o.region;
  if (s.region.empty()) s.region = env.get("AWS_REGION").value_or("");
  if (s.region.empty()) s.region = env.get("AWS_DEFAULT_REGION").value_or("");
  if (s.region.empty()) {
    if (auto all = profile_settings(files, s.profile); all.ok()) {
      if (auto it = all->find("region"); it != all->end()) s.region = it->second;
    }
  }

  ASSIGN_OR_RETURN(s.retry, retry_from(env, p, s.profile));
  ASSIGN_OR_RETURN(s.variant.fips, boolean(lookup(env, "AWS_USE_FIPS_ENDPOINT", p, s.profile, "use_fips_endpoint")));
  ASSIGN_OR_RETURN(s.variant.dualstack,
                   boolean(lookup(env, "AWS_USE_DUALSTACK_ENDPOINT", p, s.profile, "use_dualstack_endpoint")));
  ASSIGN_OR_RETURN(bool ignore_configured,
                   boolean(lookup(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", p, s.profile,
                                  "ignore_configured_endpoint_urls")));

  auto choose = [&s](std::string url, std::string source) {
    if (s.endpoint.empty() && !url.empty()) {
      s.endpoint = std::move(url);
      s.endpoint_source = std::move(source);
    }
  };
  // An endpoint given on the command line is explicit, like one passed to an SDK client's
  // constructor: AWS_IGNORE_CONFIGURED_ENDPOINT_URLS does not drop it.
  choose(o.endpoint, "--kms-endpoint");
  if (!ignore_configured) {
    choose(env.get("AWS_ENDPOINT_URL_KMS").value_or(""), "AWS_ENDPOINT_URL_KMS");
    choose(env.get("AWS_ENDPOINT_URL").value_or(""), "AWS_ENDPOINT_URL");
    if (p) {
      if (auto it = p->find("services"); it != p->end() && !it->second.empty()) {
        const std::string section = "services " + it->second;
        auto svc = files.config.find(section);
        if (svc == files.config.end()) {
          return Status(Code::kInvalidArgument, "AWS profile '" + s.profile + "' names services = " + it->second +
                                                    ", but the config file has no [" + section + "] section");
        }
        if (auto e = svc->second.find("kms.endpoint_url"); e != svc->second.end())
          choose(e->second, "[" + section + "] kms.endpoint_url");
      }
      if (auto it = p->find("endpoint_url"); it != p->end())
        choose(it->second, "endpoint_url in AWS profile '" + s.profile + "'");
    }
  }
  s.allow_insecure_endpoint =
      o.allow_insecure_endpoint || env.get("KMSFS_KMS_ALLOW_INSECURE_ENDPOINT").value_or("") == "1";
  return s;
}

Result<RetrySettings> retry_settings(const Env& env) {
  ASSIGN_OR_RETURN(AwsSettings s, resolve_settings({}, env));
  return s.retry;
}

}  // namespace kmsfs::aws
