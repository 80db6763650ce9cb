// Trino 423's SQL parser (io.trino:trino-parser), the Trino TD's trino engine runs,
// on SQL files, printing a verdict a line (common/ParseVerdicts.java):
//
//   java -cp 'lib/*:classes' TrinoParse FILE...
//
// Each file is parsed as the single statement td> sends (createStatement, decimal literals as
// DECIMAL, the server's default). Digdag's ${...} are replaced before, by the test.
// The tests that run this are tests/test_sql_java_parsers.py.

import io.trino.sql.parser.ParsingException;
import io.trino.sql.parser.ParsingOptions;
import io.trino.sql.parser.SqlParser;

import java.io.IOException;

public class TrinoParse
{
    public static void main(String[] args)
        throws IOException
    {
        SqlParser parser = new SqlParser();
        ParsingOptions options = new ParsingOptions(ParsingOptions.DecimalLiteralTreatment.AS_DECIMAL);
        ParseVerdicts.run(
            args,
            sql -> parser.createStatement(sql, options).getClass().getSimpleName(),
            ParsingException.class);
    }
}
