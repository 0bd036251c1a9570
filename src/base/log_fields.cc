#include "base/log_fields.h"

namespace kmsfs {

namespace {
thread_local std::vector<LogField> t_fields;
}  // namespace

LogFields::LogFields(std::vector<LogField> fields) : mark_(t_fields.size()) {
  for (auto& f : fields) t_fields.push_back(std::move(f));
}

LogFields::~LogFields() { t_fields.resize(mark_); }

const std::vector<LogField>& LogFields::current() { return t_fields; }

}  // namespace kmsfs
