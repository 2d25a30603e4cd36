// The header JSON parser: what it accepts, what it refuses, and quoting that it reads back.
#include <gtest/gtest.h>

#include "moco/error.h"
#include "moco/json.h"

using namespace moco;

static std::string parse_error(const std::string& text) {
  try {
    json::parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(Json, ParsesObjectsArraysStringsIntegersAndLiterals) {
  json::Value v = json::parse(R"( {"b": [1, -2, 0, 9223372036854775807, -9223372036854775808], "a": "x",
                                   "t": true, "f": false, "n": null, "o": {}} )");
  ASSERT_TRUE(v.is(json::Kind::Object));
  ASSERT_EQ(v.object.size(), 6u);
  EXPECT_EQ(v.object[0].first, "b");  // document order kept
  const json::Value* b = v.find("b");
  ASSERT_TRUE(b && b->is(json::Kind::Array));
  ASSERT_EQ(b->array.size(), 5u);
  EXPECT_EQ(b->array[1].integer, -2);
  EXPECT_EQ(b->array[3].integer, INT64_MAX);
  EXPECT_EQ(b->array[4].integer, INT64_MIN);
  EXPECT_EQ(v.find("a")->string, "x");
  EXPECT_TRUE(v.find("t")->boolean);
  EXPECT_TRUE(v.find("n")->is(json::Kind::Null));
  EXPECT_TRUE(v.find("o")->is(json::Kind::Object));
  EXPECT_EQ(v.find("zz"), nullptr);
}

TEST(Json, StringEscapesAndUnicode) {
  json::Value v = json::parse(R"("q\" b\\ s\/ \b\f\n\r\t \u00e9 \u20ac \ud83d\ude00 é")");
  EXPECT_EQ(v.string, "q\" b\\ s/ \b\f\n\r\t \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9");
}

TEST(Json, QuoteReadsBack) {
  const std::string s = "layer1.0 \"odd\" \\ name\n\x01\t\xC3\xA9";
  const std::string q = json::quote(s);
  EXPECT_EQ(q, "\"layer1.0 \\\"odd\\\" \\\\ name\\n\\u0001\\t\xC3\xA9\"");
  EXPECT_EQ(json::parse(q).string, s);
}

TEST(Json, RejectsMalformedInputNamingTheOffset) {
  EXPECT_NE(parse_error("").find("end of input"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": 1,}").find("at byte 8"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\" 1}").find("expected ':'"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": 1} x").find("after the end"), std::string::npos);
  EXPECT_NE(parse_error("[1, 2").find("expected ',' or ']'"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": 1, \"a\": 2}").find("duplicate key \"a\""), std::string::npos);
  EXPECT_NE(parse_error("1.5").find("fraction"), std::string::npos);
  EXPECT_NE(parse_error("1e3").find("fraction or exponent"), std::string::npos);
  EXPECT_NE(parse_error("012").find("leading zeros"), std::string::npos);
  EXPECT_NE(parse_error("9223372036854775808").find("64 bits"), std::string::npos);
  EXPECT_NE(parse_error("-9223372036854775809").find("64 bits"), std::string::npos);
  EXPECT_NE(parse_error("\"abc").find("unterminated"), std::string::npos);
  EXPECT_NE(parse_error("\"a\nb\"").find("control character"), std::string::npos);
  EXPECT_NE(parse_error("\"\\x\"").find("invalid escape"), std::string::npos);
  EXPECT_NE(parse_error("\"\\ud83d\"").find("surrogate"), std::string::npos);
  EXPECT_NE(parse_error("\"\\ude00\"").find("lone low surrogate"), std::string::npos);
  EXPECT_NE(parse_error("\"\xC0\xAF\"").find("UTF-8"), std::string::npos);  // overlong '/'
  EXPECT_NE(parse_error("\"\xFF\"").find("UTF-8"), std::string::npos);
  EXPECT_NE(parse_error("nul").find("expected 'null'"), std::string::npos);
  EXPECT_NE(parse_error(std::string(100, '[') + std::string(100, ']')).find("nesting"), std::string::npos);
}
