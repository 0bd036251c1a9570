// Structured fields (journald's FIELD=value) for the log lines a thread writes while a
// LogFields is alive. A call site that knows the file id, key or errno of an event attaches
// them without changing the line's text; a sink that cannot carry fields (stderr, syslog,
// a file) ignores them. Values must never be secrets or plaintext names: they are logged.
#pragma once

#include <string>
#include <vector>

namespace kmsfs {

struct LogField {
  const char* name;  // upper case, journald's rules: [A-Z0-9_], not starting with '_'
  std::string value;
};

class LogFields {
 public:
  explicit LogFields(std::vector<LogField> fields);
  ~LogFields();
  LogFields(const LogFields&) = delete;
  LogFields& operator=(const LogFields&) = delete;

  // Every field of the LogFields alive on this thread, outermost first.
  static const std::vector<LogField>& current();

 private:
  size_t mark_;
};

}  // namespace kmsfs
