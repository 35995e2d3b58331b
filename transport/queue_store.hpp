#pragma once
// The durable embedded queue's storage: a SQLite database in WAL mode whose
// `messages` table holds one row per message of one or more queues, with its
// delivery state. Every write is one transaction that has committed when the
// call returns, so whatever a queue acknowledged after a write survives a
// `kill -9` (and, with store_sync::full, a power loss). No actors here: the
// embedded queue owns one store and calls it from its handlers.
#include "messages/types.hpp"
#include "transport/file_lock.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace ghscale {

/// How long a commit waits for the disk (SQLite's `synchronous` in WAL mode).
enum class store_sync {
  /// The WAL is fsynced at every commit: a commit survives a power loss.
  full,
  /// The WAL is fsynced only at checkpoints: a commit survives the process
  /// being killed, but a power loss may undo the last commits.
  normal,
};

/// A message to insert; body and attributes are only read during the call.
struct new_record {
  std::string_view body;
  int64_t sent_at = 0;    // Unix milliseconds
  int64_t visible_at = 0; // Unix milliseconds
  const message_attributes* attributes = nullptr; // none if null
};

/// What a receive or a visibility change writes for one message.
struct delivery_record {
  int64_t id = 0;
  int64_t visible_at = 0; // Unix milliseconds
  int32_t receive_count = 0;
  std::string receipt; // of the latest delivery
};

/// One message as stored.
struct queue_record {
  int64_t id = 0; // assigned at insert, never reused within the database
  std::string body;
  int64_t sent_at = 0;    // Unix milliseconds
  int64_t visible_at = 0; // Unix milliseconds
  int32_t receive_count = 0;
  std::string receipt; // "" before the first delivery
  message_attributes attributes;
};

/// One queue's rows in one database file. Several queues may share a file;
/// each store is one connection, used by one actor at a time. Errors name
/// the file, the queue, the operation and what SQLite said.
class queue_store {
public:
  /// The schema this build writes and reads (`PRAGMA user_version`); a
  /// version 1 file (no attributes column) is upgraded when opened.
  static constexpr int32_t schema_version = 2;

  /// Opens or creates the database at `path` and counts a new incarnation of
  /// `queue` in it. Refuses a file that is not a ghscale queue store or has
  /// another schema version, and one another process has open: one writer
  /// per file (errc::invalid_config naming the file and the holder's pid).
  static caf::expected<queue_store> open(const std::string& path,
                                         const std::string& queue,
                                         store_sync sync = store_sync::full);

  queue_store(queue_store&&) noexcept;
  queue_store& operator=(queue_store&&) noexcept;
  ~queue_store();

  /// How many times this queue was opened in this database, this time
  /// included: receipts carry it, so none repeats across restarts.
  int64_t incarnation() const noexcept { return incarnation_; }

  const std::string& path() const noexcept { return path_; }

  /// Inserts the messages in one transaction; the ids they got, in order.
  caf::expected<std::vector<int64_t>> insert(const std::vector<new_record>& records);

  /// Writes the delivery state of the messages in one transaction.
  caf::error update(const std::vector<delivery_record>& deliveries);

  /// Deletes the messages in one transaction.
  caf::error remove(const std::vector<int64_t>& ids);

  /// Every message of the queue, by id (= the order they were sent in).
  caf::expected<std::vector<queue_record>> load();

private:
  struct connection_closer {
    void operator()(sqlite3* db) const noexcept;
  };
  struct statement_finalizer {
    void operator()(sqlite3_stmt* stmt) const noexcept;
  };
  using connection = std::unique_ptr<sqlite3, connection_closer>;
  using statement = std::unique_ptr<sqlite3_stmt, statement_finalizer>;
  class transaction;

  queue_store(std::string path, std::string queue, connection db,
              std::shared_ptr<file_lock> lock);

  caf::error failure(const std::string& operation) const;
  caf::error exec(const char* sql, const std::string& operation);
  caf::expected<statement> prepare(const char* sql);
  /// Steps a statement that answers no rows, then resets it.
  caf::error run(sqlite3_stmt* stmt, const std::string& operation);
  /// The first column of the one row `sql` answers.
  caf::expected<int64_t> single_integer(const char* sql, const std::string& operation);
  caf::error prepare_statements();
  caf::error enable_wal();
  caf::error init_schema(store_sync sync);
  caf::error check_schema();

  std::string path_;
  std::string queue_;
  int64_t incarnation_ = 0;
  std::shared_ptr<file_lock> lock_; // released after the connection closed
  // Declared before the statements, so they are finalized before it closes.
  connection db_;
  statement begin_;
  statement commit_;
  statement rollback_;
  statement insert_;
  statement update_;
  statement remove_;
  statement load_;
};

} // namespace ghscale
