#include "transport/queue_store.hpp"

#include "messages/types.hpp"

#include "transport/json.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sqlite3.h>

namespace ghscale {

namespace {

/// PRAGMA application_id of a ghscale queue store: "ghsq".
constexpr int64_t application_id = 0x67687371;

/// How long a write waits for another connection to the same file (another
/// queue sharing it, or a second process) before it fails.
constexpr int busy_timeout_ms = 5000;

// ?1 of every statement that has parameters is the queue's name; prepare()
// binds it once.
const char* create_schema = R"sql(
  PRAGMA application_id = 1734898545;
  PRAGMA user_version = 2;
  CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    incarnation INTEGER NOT NULL
  );
  CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '{}'
  );
  CREATE INDEX messages_by_queue ON messages (queue, id);
)sql";

// Version 1 had no attributes: every message it holds has none.
const char* upgrade_from_1 = R"sql(
  ALTER TABLE messages ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
  PRAGMA user_version = 2;
)sql";
static_assert(application_id == 1734898545, "create_schema spells it in decimal");

const char* count_incarnation
  = "INSERT INTO queues (name, incarnation) VALUES (?1, 1) "
    "ON CONFLICT (name) DO UPDATE SET incarnation = incarnation + 1 "
    "RETURNING incarnation";
const char* insert_message
  = "INSERT INTO messages (queue, body, sent_at, visible_at, attributes) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";
const char* update_delivery
  = "UPDATE messages SET visible_at = ?3, receive_count = ?4, receipt = ?5 "
    "WHERE queue = ?1 AND id = ?2";
const char* delete_message = "DELETE FROM messages WHERE queue = ?1 AND id = ?2";
const char* load_messages
  = "SELECT id, body, sent_at, visible_at, receive_count, receipt, attributes "
    "FROM messages "
    "WHERE queue = ?1 ORDER BY id";

std::string column_string(sqlite3_stmt* stmt, int column) {
  // The pointer first, then the size (SQLite's documented order).
  auto data = static_cast<const char*>(sqlite3_column_blob(stmt, column));
  auto size = sqlite3_column_bytes(stmt, column);
  if (data == nullptr || size == 0)
    return {};
  return {data, static_cast<size_t>(size)};
}

/// Attributes as the column holds them: a JSON object of strings, so that
/// `json_extract(attributes, '$."ghscale.reason"')` reads one in sqlite3.
std::string encode_attributes(const message_attributes* attributes) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  w.StartObject();
  if (attributes != nullptr)
    for (auto& [name, value] : *attributes) {
      w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
      w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
    }
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

/// The column's attributes; what is not an object of strings is left out.
message_attributes decode_attributes(const std::string& text) {
  message_attributes out;
  rapidjson::Document doc;
  parse_outside_json(doc, text);
  if (doc.HasParseError() || !doc.IsObject())
    return out;
  for (auto& m : doc.GetObject())
    if (m.value.IsString())
      out.emplace(std::string{m.name.GetString(), m.name.GetStringLength()},
                  std::string{m.value.GetString(), m.value.GetStringLength()});
  return out;
}

/// Puts a statement back for its next use when the scope ends.
class reset_on_exit {
public:
  explicit reset_on_exit(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~reset_on_exit() { sqlite3_reset(stmt_); }
  reset_on_exit(const reset_on_exit&) = delete;
  reset_on_exit& operator=(const reset_on_exit&) = delete;

private:
  sqlite3_stmt* stmt_;
};

} // namespace

/// BEGIN IMMEDIATE ... COMMIT; rolls back if the scope ends before the commit.
class queue_store::transaction {
public:
  explicit transaction(queue_store& store) : store_(store) {}
  ~transaction() {
    if (sqlite3_get_autocommit(store_.db_.get()) == 0)
      store_.run(store_.rollback_.get(), "rollback");
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  caf::error begin() { return store_.run(store_.begin_.get(), "begin"); }
  caf::error commit() { return store_.run(store_.commit_.get(), "commit"); }

private:
  queue_store& store_;
};

void queue_store::connection_closer::operator()(sqlite3* db) const noexcept {
  sqlite3_close_v2(db);
}

void queue_store::statement_finalizer::operator()(sqlite3_stmt* stmt) const noexcept {
  sqlite3_finalize(stmt);
}

queue_store::queue_store(std::string path, std::string queue, connection db,
                         std::shared_ptr<file_lock> lock)
  : path_(std::move(path)), queue_(std::move(queue)), lock_(std::move(lock)),
    db_(std::move(db)) {
}

queue_store::queue_store(queue_store&&) noexcept = default;
queue_store& queue_store::operator=(queue_store&&) noexcept = default;
queue_store::~queue_store() = default;

caf::expected<queue_store> queue_store::open(const std::string& path,
                                             const std::string& queue,
                                             store_sync sync) {
  auto lock = file_lock::acquire(path);
  if (!lock)
    return caf::make_error(static_cast<errc>(lock.error().code()),
                           "queue store '" + path + "', queue '" + queue
                             + "': open: " + context_of(lock.error()));
  sqlite3* raw = nullptr;
  auto rc = sqlite3_open_v2(path.c_str(), &raw,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                              | SQLITE_OPEN_NOMUTEX,
                            nullptr);
  queue_store store{path, queue, connection{raw}, std::move(*lock)};
  if (rc != SQLITE_OK)
    return store.failure("open");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  if (auto err = store.init_schema(sync))
    return err;
  if (auto err = store.prepare_statements())
    return err;
  return store;
}

caf::error queue_store::failure(const std::string& operation) const {
  return caf::make_error(errc::backend_failure,
                         "queue store '" + path_ + "', queue '" + queue_ + "': "
                           + operation + ": " + sqlite3_errmsg(db_.get()));
}

caf::error queue_store::exec(const char* sql, const std::string& operation) {
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK)
    return failure(operation);
  return caf::none;
}

caf::expected<queue_store::statement> queue_store::prepare(const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw,
                         nullptr)
      != SQLITE_OK)
    return failure(std::string{"prepare '"} + sql + "'");
  statement stmt{raw};
  if (sqlite3_bind_parameter_count(raw) > 0
      && sqlite3_bind_text(raw, 1, queue_.data(), static_cast<int>(queue_.size()),
                           SQLITE_TRANSIENT)
           != SQLITE_OK)
    return failure("bind the queue name");
  return stmt;
}

caf::error queue_store::run(sqlite3_stmt* stmt, const std::string& operation) {
  reset_on_exit reset{stmt};
  if (sqlite3_step(stmt) != SQLITE_DONE)
    return failure(operation);
  return caf::none;
}

caf::expected<int64_t> queue_store::single_integer(const char* sql,
                                                   const std::string& operation) {
  auto stmt = prepare(sql);
  if (!stmt)
    return stmt.error();
  if (sqlite3_step(stmt->get()) != SQLITE_ROW)
    return failure(operation);
  return sqlite3_column_int64(stmt->get(), 0);
}

caf::error queue_store::enable_wal() {
  // WAL: readers never block the writer, and a commit appends to one file.
  auto mode = prepare("PRAGMA journal_mode = WAL");
  if (!mode)
    return mode.error();
  if (sqlite3_step(mode->get()) != SQLITE_ROW)
    return failure("set WAL mode");
  auto journal = column_string(mode->get(), 0);
  if (journal != "wal")
    return caf::make_error(errc::backend_failure,
                           "queue store '" + path_ + "': journal mode is '" + journal
                             + "', WAL is not available for this file");
  return caf::none;
}

caf::error queue_store::init_schema(store_sync sync) {
  if (auto err = enable_wal())
    return err;
  if (auto err = exec(sync == store_sync::full ? "PRAGMA synchronous = FULL"
                                               : "PRAGMA synchronous = NORMAL",
                      "set synchronous"))
    return err;
  for (auto [sql, target] : {std::pair{"BEGIN IMMEDIATE", &begin_},
                             std::pair{"COMMIT", &commit_},
                             std::pair{"ROLLBACK", &rollback_}}) {
    auto stmt = prepare(sql);
    if (!stmt)
      return stmt.error();
    *target = std::move(*stmt);
  }
  transaction tx{*this};
  if (auto err = tx.begin())
    return err;
  if (auto err = check_schema())
    return err;
  auto incarnation = single_integer(count_incarnation, "count the incarnation");
  if (!incarnation)
    return incarnation.error();
  incarnation_ = *incarnation;
  return tx.commit();
}

caf::error queue_store::check_schema() {
  auto app = single_integer("PRAGMA application_id", "read the application id");
  auto version = single_integer("PRAGMA user_version", "read the schema version");
  auto tables = single_integer("SELECT count(*) FROM sqlite_master",
                               "list the tables");
  if (!app)
    return app.error();
  if (!version)
    return version.error();
  if (!tables)
    return tables.error();
  if (*app == 0 && *version == 0 && *tables == 0)
    return exec(create_schema, "create the schema");
  if (*app != application_id)
    return caf::make_error(errc::rejected,
                           "queue store '" + path_
                             + "': the file is a database of another application");
  if (*version == 1)
    return exec(upgrade_from_1, "upgrade the schema from version 1");
  if (*version != schema_version)
    return caf::make_error(errc::rejected,
                           "queue store '" + path_ + "': schema version "
                             + std::to_string(*version) + ", this ghscale reads version "
                             + std::to_string(schema_version));
  return caf::none;
}

caf::error queue_store::prepare_statements() {
  for (auto [sql, target] : {std::pair{insert_message, &insert_},
                             std::pair{update_delivery, &update_},
                             std::pair{delete_message, &remove_},
                             std::pair{load_messages, &load_}}) {
    auto stmt = prepare(sql);
    if (!stmt)
      return stmt.error();
    *target = std::move(*stmt);
  }
  return caf::none;
}

caf::expected<std::vector<int64_t>>
queue_store::insert(const std::vector<new_record>& records) {
  std::vector<int64_t> ids;
  if (records.empty())
    return ids;
  ids.reserve(records.size());
  transaction tx{*this};
  if (auto err = tx.begin())
    return err;
  auto* stmt = insert_.get();
  for (auto& record : records) {
    // A zero-length blob needs no pointer; a null one would bind NULL.
    auto bound = record.body.empty()
                   ? sqlite3_bind_zeroblob(stmt, 2, 0)
                   : sqlite3_bind_blob(stmt, 2, record.body.data(),
                                       static_cast<int>(record.body.size()),
                                       SQLITE_STATIC);
    if (bound != SQLITE_OK)
      return failure("bind a message body of " + std::to_string(record.body.size())
                     + " bytes");
    sqlite3_bind_int64(stmt, 3, record.sent_at);
    sqlite3_bind_int64(stmt, 4, record.visible_at);
    auto attributes = encode_attributes(record.attributes);
    sqlite3_bind_text(stmt, 5, attributes.data(), static_cast<int>(attributes.size()),
                      SQLITE_TRANSIENT);
    if (auto err = run(stmt, "insert"))
      return err;
    ids.push_back(sqlite3_last_insert_rowid(db_.get()));
  }
  if (auto err = tx.commit())
    return err;
  return ids;
}

caf::error queue_store::update(const std::vector<delivery_record>& deliveries) {
  if (deliveries.empty())
    return caf::none;
  transaction tx{*this};
  if (auto err = tx.begin())
    return err;
  auto* stmt = update_.get();
  for (auto& delivery : deliveries) {
    sqlite3_bind_int64(stmt, 2, delivery.id);
    sqlite3_bind_int64(stmt, 3, delivery.visible_at);
    sqlite3_bind_int(stmt, 4, delivery.receive_count);
    sqlite3_bind_text(stmt, 5, delivery.receipt.data(),
                      static_cast<int>(delivery.receipt.size()), SQLITE_STATIC);
    if (auto err = run(stmt, "update"))
      return err;
  }
  return tx.commit();
}

caf::error queue_store::remove(const std::vector<int64_t>& ids) {
  if (ids.empty())
    return caf::none;
  transaction tx{*this};
  if (auto err = tx.begin())
    return err;
  auto* stmt = remove_.get();
  for (auto id : ids) {
    sqlite3_bind_int64(stmt, 2, id);
    if (auto err = run(stmt, "delete"))
      return err;
  }
  return tx.commit();
}

caf::expected<std::vector<queue_record>> queue_store::load() {
  auto* stmt = load_.get();
  reset_on_exit reset{stmt};
  std::vector<queue_record> records;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    queue_record record;
    record.id = sqlite3_column_int64(stmt, 0);
    record.body = column_string(stmt, 1);
    record.sent_at = sqlite3_column_int64(stmt, 2);
    record.visible_at = sqlite3_column_int64(stmt, 3);
    record.receive_count = sqlite3_column_int(stmt, 4);
    record.receipt = column_string(stmt, 5);
    record.attributes = decode_attributes(column_string(stmt, 6));
    records.push_back(std::move(record));
  }
  if (rc != SQLITE_DONE)
    return failure("load");
  return records;
}

} // namespace ghscale
