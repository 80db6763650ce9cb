// Trino 423's SQL parser (io.trino:trino-parser), the Trino TD's trino engine runs,
// on SQL files: one JSON object a line, in the order given:
//   {"file": PATH, "ok": true, "statement": "Query"}
//   {"file": PATH, "ok": false, "error": "line 3:7: mismatched input ..."}
//
//   java -cp 'lib/*:classes' TrinoParse FILE...
//
// Each file is parsed as the single statement td> sends (createStatement, decimal literals as
// DECIMAL, the server's default). Digdag's ${...} are replaced before, by the test.
// The tests that run this are tests/test_sql_java_parsers.py.

import io.trino.sql.parser.ParsingException;
import io.trino.sql.parser.ParsingOptions;
import io.trino.sql.parser.SqlParser;
import io.trino.sql.tree.Statement;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

public class TrinoParse
{
    public static void main(String[] args)
        throws IOException
    {
        SqlParser parser = new SqlParser();
        ParsingOptions options = new ParsingOptions(ParsingOptions.DecimalLiteralTreatment.AS_DECIMAL);
        for (String arg : args) {
            String sql = new String(Files.readAllBytes(Paths.get(arg)), StandardCharsets.UTF_8);
            StringBuilder out = new StringBuilder("{\"file\": ").append(quote(arg));
            try {
                Statement statement = parser.createStatement(sql, options);
                out.append(", \"ok\": true, \"statement\": ").append(quote(statement.getClass().getSimpleName()));
            }
            catch (ParsingException e) {
                out.append(", \"ok\": false, \"error\": ").append(quote(e.getMessage()));
            }
            catch (RuntimeException e) {
                out.append(", \"ok\": false, \"error\": ").append(quote(e.getClass().getSimpleName() + ": " + e.getMessage()));
            }
            System.out.println(out.append("}"));
        }
    }

    private static String quote(String text)
    {
        StringBuilder b = new StringBuilder("\"");
        for (char c : String.valueOf(text).toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            }
            else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            }
            else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
