// Native unit test of the JSON scanner (the plugin build compiles src/ only):
//
//   cc -g -fsanitize=address,undefined -Wall -Wextra -I src test/json_field_test.c src/json_field.c -o /tmp/json_field_test && /tmp/json_field_test
#include "json_field.h"
#include <stdio.h>
#include <string.h>
static int fails;
static void t(const char *text, const char *name, json_field_status want, const char *want_val) {
  json_buf k = {0}, v = {0};
  json_field_status s = json_field((const uint8_t*)text, strlen(text), (const uint8_t*)name, strlen(name), &k, &v);
  int ok = s == want && (!want_val || (v.len == strlen(want_val) && memcmp(v.ptr, want_val, v.len) == 0));
  if (!ok) { fails++; printf("FAIL %s: got %d %.*s\n", text, s, (int)v.len, v.ptr ? (char*)v.ptr : ""); }
  json_buf_free(&k); json_buf_free(&v);
}
int main(void) {
  t("{\"country\":\"DE\"}", "country", JSON_FIELD_FOUND, "DE");
  t(" { \"a\" : {\"country\":\"US\"}, \"country\" : \"FR\" } ", "country", JSON_FIELD_FOUND, "FR");
  t("{\"a\":{\"country\":\"US\"}}", "country", JSON_FIELD_MISSING, NULL);
  t("{\"a\":[{\"country\":\"US\"}], \"b\": \"\\\"country\\\": \\\"X\\\"\"}", "country", JSON_FIELD_MISSING, NULL);
  t("{\"coun\\u0074ry\":\"D\\u00e9\\\"\"}", "country", JSON_FIELD_FOUND, "D\xc3\xa9\"");
  t("{\"country\":\"\\ud83d\\ude00\"}", "country", JSON_FIELD_FOUND, "\xf0\x9f\x98\x80");
  t("{\"country\":1}", "country", JSON_FIELD_NOT_STRING, NULL);
  t("{\"country\":\"DE\",\"country\":null}", "country", JSON_FIELD_NOT_STRING, NULL);
  t("{}", "country", JSON_FIELD_MISSING, NULL);
  t("[1,2]", "country", JSON_FIELD_NOT_OBJECT, NULL);
  t("\"x\"", "country", JSON_FIELD_NOT_OBJECT, NULL);
  t("12", "country", JSON_FIELD_NOT_OBJECT, NULL);
  t("", "country", JSON_FIELD_INVALID, NULL);
  t("{", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"DE\"", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"DE\"} x", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"DE\",}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"a\":[1,}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"a\":[1}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"a\":{\"b\" 1}}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"a\":01}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"a\":-1.5e+3,\"b\":[true,false,null,{}],\"country\":\"X\"}", "country", JSON_FIELD_FOUND, "X");
  t("{\"a\":tru}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"a\nb\"}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"\\ud83d\"}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"\\x\"}", "country", JSON_FIELD_INVALID, NULL);
  t("not json", "country", JSON_FIELD_INVALID, NULL);
  char deep[1200]; int n = 0; n += sprintf(deep, "{\"a\":"); for (int i = 0; i < 300; i++) deep[n++]='['; for (int i = 0; i < 300; i++) deep[n++]=']'; deep[n++]='}'; deep[n]=0;
  t(deep, "country", JSON_FIELD_INVALID, NULL);
  n = 0; n += sprintf(deep, "{\"a\":"); for (int i = 0; i < 200; i++) deep[n++]='['; for (int i = 0; i < 200; i++) deep[n++]=']'; n += sprintf(deep+n, ",\"country\":\"Z\"}");
  t(deep, "country", JSON_FIELD_FOUND, "Z");
  t("{\"country\":\"Espa\xc3\xb1" "a\"}", "country", JSON_FIELD_FOUND, "Espa\xc3\xb1" "a");
  t("{\"country\":\"\xff\"}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"\xc3\"}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"\xed\xa0\x80\"}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"\xc0\xaf\"}", "country", JSON_FIELD_INVALID, NULL);
  t("{\"country\":\"\xf0\x9f\x98\x80\"}", "country", JSON_FIELD_FOUND, "\xf0\x9f\x98\x80");
  if (utf8_prefix((const uint8_t*)"ab\xc3\xb1", 4, 3) != 2 || utf8_prefix((const uint8_t*)"ab\xc3\xb1", 4, 4) != 4 || utf8_prefix((const uint8_t*)"abc", 3, 2) != 2) { fails++; puts("FAIL utf8_prefix"); }
  printf("%s (%d failures)\n", fails ? "FAILED" : "ok", fails);
  return fails != 0;
}
