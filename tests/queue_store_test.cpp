#include "transport/queue_store.hpp"

#include "messages/types.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace ghscale;

namespace {

class QueueStoreTest : public ::testing::Test {
protected:
  QueueStoreTest() {
    auto pattern = (std::filesystem::temp_directory_path() / "queue-store-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
    EXPECT_FALSE(dir_.empty());
  }

  ~QueueStoreTest() override { std::filesystem::remove_all(dir_); }

  std::string db_path() const { return dir_ + "/queue.db"; }

  queue_store open(const std::string& queue = "jobs") {
    auto store = queue_store::open(db_path(), queue);
    if (!store)
      throw std::runtime_error(describe(store.error()));
    return std::move(*store);
  }

  /// Runs `sql` on the file with a connection of its own, as another tool would.
  void exec_raw(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  std::string open_error() {
    auto store = queue_store::open(db_path(), "jobs");
    EXPECT_FALSE(store);
    return store ? std::string{} : describe(store.error());
  }

  std::string dir_;
};

TEST_F(QueueStoreTest, InsertedMessagesSurviveClosingTheStore) {
  std::vector<int64_t> ids;
  {
    auto store = open();
    EXPECT_EQ(store.incarnation(), 1);
    auto inserted = store.insert({{"a", 1000, 1000}, {"b", 1000, 6000}});
    ASSERT_TRUE(inserted) << describe(inserted.error());
    ids = *inserted;
  }
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_LT(ids[0], ids[1]);
  auto store = open();
  EXPECT_EQ(store.incarnation(), 2);
  auto loaded = store.load();
  ASSERT_TRUE(loaded) << describe(loaded.error());
  ASSERT_EQ(loaded->size(), 2u);
  auto& a = (*loaded)[0];
  EXPECT_EQ(a.id, ids[0]);
  EXPECT_EQ(a.body, "a");
  EXPECT_EQ(a.sent_at, 1000);
  EXPECT_EQ(a.visible_at, 1000);
  EXPECT_EQ(a.receive_count, 0);
  EXPECT_EQ(a.receipt, "");
  EXPECT_EQ((*loaded)[1].body, "b");
  EXPECT_EQ((*loaded)[1].visible_at, 6000);
}

TEST_F(QueueStoreTest, UsesWriteAheadLogging) {
  open();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string{reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))},
            "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(QueueStoreTest, BodiesAreKeptByteForByte) {
  std::string binary{"{\"x\":1}\0\xff tail", 14};
  {
    auto store = open();
    ASSERT_TRUE(store.insert({{"", 1, 1}, {binary, 2, 2}}));
  }
  auto loaded = open().load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ((*loaded)[0].body, "");
  EXPECT_EQ((*loaded)[1].body, binary);
}

TEST_F(QueueStoreTest, DeliveryStateIsPersisted) {
  {
    auto store = open();
    auto ids = store.insert({{"a", 1000, 1000}, {"b", 1000, 1000}});
    ASSERT_TRUE(ids);
    auto err = store.update({{(*ids)[1], 31000, 1, "r-1-1"}, {(*ids)[1], 45000, 2, "r-1-2"}});
    EXPECT_FALSE(err) << describe(err);
  }
  auto loaded = open().load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ((*loaded)[0].receive_count, 0);
  EXPECT_EQ((*loaded)[0].visible_at, 1000);
  EXPECT_EQ((*loaded)[1].receive_count, 2);
  EXPECT_EQ((*loaded)[1].visible_at, 45000);
  EXPECT_EQ((*loaded)[1].receipt, "r-1-2");
}

TEST_F(QueueStoreTest, DeletedMessagesStayDeletedAndTheirIdsAreNotReused) {
  int64_t last = 0;
  {
    auto store = open();
    auto ids = store.insert({{"a", 1, 1}, {"b", 1, 1}, {"c", 1, 1}});
    ASSERT_TRUE(ids);
    last = ids->back();
    auto err = store.remove({(*ids)[0], last});
    EXPECT_FALSE(err) << describe(err);
  }
  auto store = open();
  auto loaded = store.load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].body, "b");
  auto next = store.insert({{"d", 2, 2}});
  ASSERT_TRUE(next);
  EXPECT_GT(next->front(), last);
}

TEST_F(QueueStoreTest, QueuesSharingAFileKeepTheirOwnMessages) {
  auto jobs = open("jobs");
  auto dead = open("jobs-dlq");
  ASSERT_TRUE(jobs.insert({{"job", 1, 1}}));
  auto dead_ids = dead.insert({{"poison", 1, 1}});
  ASSERT_TRUE(dead_ids);
  // An id of the other queue deletes nothing here.
  EXPECT_FALSE(jobs.remove(*dead_ids));
  auto in_jobs = jobs.load();
  auto in_dead = dead.load();
  ASSERT_TRUE(in_jobs);
  ASSERT_TRUE(in_dead);
  ASSERT_EQ(in_jobs->size(), 1u);
  EXPECT_EQ(in_jobs->front().body, "job");
  ASSERT_EQ(in_dead->size(), 1u);
  EXPECT_EQ(in_dead->front().body, "poison");
  EXPECT_EQ(dead.incarnation(), 1);
}

TEST_F(QueueStoreTest, AttributesAreKeptAsWritten) {
  message_attributes attrs{{"ghscale.reason", "received 5 times, \"quoted\" \u00e9"},
                           {"ghscale.source-queue", "jobs"},
                           {"empty", ""}};
  {
    auto store = open();
    new_record with{"a", 1, 1, &attrs};
    new_record without{"b", 1, 1, nullptr};
    ASSERT_TRUE(store.insert({with, without}));
  }
  auto loaded = open().load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ((*loaded)[0].attributes, attrs);
  EXPECT_TRUE((*loaded)[1].attributes.empty());
}

// A file written by a ghscale whose schema had no attributes (version 1)
// is upgraded in place: its messages are kept, with no attributes.
TEST_F(QueueStoreTest, UpgradesAVersion1FileKeepingItsMessages) {
  exec_raw(R"sql(
    PRAGMA application_id = 1734898545;
    PRAGMA user_version = 1;
    CREATE TABLE queues (name TEXT PRIMARY KEY, incarnation INTEGER NOT NULL);
    CREATE TABLE messages (
      id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body BLOB NOT NULL,
      sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL,
      receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT NOT NULL DEFAULT '');
    CREATE INDEX messages_by_queue ON messages (queue, id);
    INSERT INTO queues VALUES ('jobs', 3);
    INSERT INTO messages (queue, body, sent_at, visible_at, receive_count, receipt)
      VALUES ('jobs', 'old', 10, 20, 2, 'r-9');
  )sql");
  {
    auto store = open();
    EXPECT_EQ(store.incarnation(), 4);
    auto loaded = store.load();
    ASSERT_TRUE(loaded) << describe(loaded.error());
    ASSERT_EQ(loaded->size(), 1u);
    EXPECT_EQ((*loaded)[0].body, "old");
    EXPECT_EQ((*loaded)[0].receive_count, 2);
    EXPECT_EQ((*loaded)[0].receipt, "r-9");
    EXPECT_TRUE((*loaded)[0].attributes.empty());
    message_attributes attrs{{"k", "v"}};
    ASSERT_TRUE(store.insert({new_record{"new", 30, 30, &attrs}}));
  }
  auto loaded = open().load();
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ((*loaded)[1].attributes, (message_attributes{{"k", "v"}}));
}

TEST_F(QueueStoreTest, RefusesAnotherSchemaVersion) {
  open();
  exec_raw("PRAGMA user_version = 3");
  auto error = open_error();
  EXPECT_NE(error.find("queue store '" + db_path() + "'"), std::string::npos) << error;
  EXPECT_NE(error.find("schema version 3, this ghscale reads version 2"),
            std::string::npos)
    << error;
}

TEST_F(QueueStoreTest, RefusesAnotherApplicationsDatabase) {
  exec_raw("CREATE TABLE accounts (id INTEGER PRIMARY KEY)");
  auto error = open_error();
  EXPECT_NE(error.find("a database of another application"), std::string::npos)
    << error;
}

TEST_F(QueueStoreTest, RefusesAFileThatIsNotADatabase) {
  std::ofstream{db_path()} << "this is a text file, long enough to have a header......"
                              "..............................................";
  auto error = open_error();
  EXPECT_NE(error.find(db_path()), std::string::npos) << error;
  EXPECT_NE(error.find("file is not a database"), std::string::npos) << error;
}

TEST_F(QueueStoreTest, ABadPathNamesThePathAndSQLitesReason) {
  auto path = dir_ + "/missing-directory/queue.db";
  auto store = queue_store::open(path, "jobs");
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error(), errc::backend_failure);
  auto error = describe(store.error());
  EXPECT_NE(error.find("queue store '" + path + "', queue 'jobs': open: "),
            std::string::npos)
    << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;
}

} // namespace
